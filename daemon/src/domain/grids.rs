//! [`GridIndex`]: the governance grid as a tree (community → town/street → county).
//!
//! Owns the ids, the dense index of each grid (used to route events to shards), the parent
//! chain and each grid's depth (0 for a root), and holds the geometry built from the same
//! grids (`spatial`), so one `Arc<GridIndex>` answers both "is this grid beneath that
//! one" and "which grid is this point in".
//!
//! Invariants: indexes are positions in the config's `[[grids]]` list and never change for
//! the life of the index; `depths[i]` is the length of grid `i`'s parent chain. Built from
//! a validated config there is no cycle; built from anything else (tests), a cycle is
//! cut at the number of grids rather than looping.

use std::sync::Arc;

use foldhash::HashMap;

use super::spatial::Geometry;
use crate::config::GridConfig;

/// The grid network: which grids exist, who their ancestors are, and where they lie.
#[derive(Debug, Clone, Default)]
pub struct GridIndex {
    /// Grid id → index into `parents`/`names`.
    pub(super) ids: HashMap<Arc<str>, usize>,
    /// Parent index of each grid.
    pub(super) parents: Vec<Option<usize>>,
    /// Grid ids by index.
    pub(super) names: Vec<Arc<str>>,
    /// Depth of each grid: 0 for a root, its parent's plus one below.
    pub(super) depths: Vec<usize>,
    /// Display names by index.
    pub(super) titles: Vec<Arc<str>>,
    /// Polygons, their bounding-box tree, centroids and neighbours.
    pub(super) geometry: Geometry,
}

impl GridIndex {
    /// Builds the index, and the geometry of the grids that have polygons, from validated
    /// grids.
    pub fn new(grids: &[GridConfig]) -> Self {
        let names: Vec<Arc<str>> = grids.iter().map(|g| Arc::from(g.id.as_str())).collect();
        let ids: HashMap<Arc<str>, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let parents: Vec<Option<usize>> = grids
            .iter()
            .map(|g| g.parent.as_deref().and_then(|p| ids.get(p).copied()))
            .collect();
        let depths = depths(&parents);
        let polygons: Vec<&[[f64; 2]]> = grids.iter().map(|g| g.polygon.as_slice()).collect();
        let geometry = Geometry::build(&polygons, &depths, &names);
        let titles = grids.iter().map(|g| Arc::from(g.name.as_str())).collect();
        Self {
            ids,
            parents,
            names,
            depths,
            titles,
            geometry,
        }
    }

    /// Whether the grid exists.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Number of grids.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no grids.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The grid's dense index, for routing.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.get(id).copied()
    }

    /// The grid id at a dense index: the inverse of [`GridIndex::index_of`].
    pub fn id_at(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(|n| &**n)
    }

    /// How deep the grid is in the tree: 0 for a root (a county), 1 for its towns...
    pub fn depth(&self, grid: &str) -> Option<usize> {
        self.index_of(grid).map(|i| self.depths[i])
    }

    /// The deepest depth of any grid (0 when there are none).
    pub fn max_depth(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(0)
    }

    /// The grid's display name (its id when unknown).
    pub fn name<'a>(&'a self, grid: &'a str) -> &'a str {
        self.index_of(grid)
            .and_then(|i| self.titles.get(i))
            .map(|t| &**t)
            .unwrap_or(grid)
    }

    /// The shared id of `grid` (no allocation), when known.
    pub fn shared(&self, grid: &str) -> Option<&Arc<str>> {
        self.names.get(self.index_of(grid)?)
    }

    /// The shared id of the grid with index `ix`.
    pub fn shared_at(&self, ix: usize) -> Option<&Arc<str>> {
        self.names.get(ix)
    }

    /// The depth of the grid with index `ix`.
    pub fn depth_at(&self, ix: usize) -> Option<usize> {
        self.depths.get(ix).copied()
    }

    /// The enclosing grid; `None` for a root or an unknown grid.
    pub fn parent(&self, grid: &str) -> Option<&str> {
        self.parent_shared(grid).map(|p| &**p)
    }

    /// [`GridIndex::parent`], as a shared id.
    pub fn parent_shared(&self, grid: &str) -> Option<&Arc<str>> {
        self.names.get(self.parent_index(self.index_of(grid)?)?)
    }

    /// The ancestor of `grid` at exactly `depth` (the grid itself when that is its own
    /// depth); `None` when the grid is shallower than `depth` or unknown.
    pub fn ancestor_at(&self, grid: &str, depth: usize) -> Option<&str> {
        self.ancestor_shared(grid, depth).map(|a| &**a)
    }

    /// The index of the parent of the grid with index `ix`.
    pub fn parent_index(&self, ix: usize) -> Option<usize> {
        *self.parents.get(ix)?
    }

    /// The index of the ancestor at exactly `depth` of the grid with index `ix` (itself at
    /// its own depth); `None` when it is shallower than `depth` or `ix` is out of range.
    pub fn ancestor_index(&self, ix: usize, depth: usize) -> Option<usize> {
        let own = *self.depths.get(ix)?;
        if depth > own {
            return None;
        }
        let mut g = ix;
        for _ in depth..own {
            g = self.parents[g]?;
        }
        Some(g)
    }

    /// [`GridIndex::ancestor_at`], as a shared id.
    pub fn ancestor_shared(&self, grid: &str, depth: usize) -> Option<&Arc<str>> {
        let g = self.ancestor_index(self.index_of(grid)?, depth)?;
        Some(&self.names[g])
    }

    /// Whether `grid` is `ancestor` or lies beneath it.
    pub fn is_within(&self, grid: &str, ancestor: &str) -> bool {
        let (Some(mut g), Some(a)) = (self.index_of(grid), self.index_of(ancestor)) else {
            return false;
        };
        loop {
            if g == a {
                return true;
            }
            match self.parents[g] {
                Some(p) => g = p,
                None => return false,
            }
        }
    }

    /// Every grid at or beneath any of `roots`.
    pub fn expand(&self, roots: &[String]) -> Vec<String> {
        self.names
            .iter()
            .filter(|g| roots.iter().any(|r| self.is_within(g, r)))
            .map(|g| g.to_string())
            .collect()
    }

    /// The first grid id on a parent chain that comes back to itself, if any.
    pub fn find_cycle(grids: &[GridConfig]) -> Option<String> {
        let parent: HashMap<&str, &str> = grids
            .iter()
            .filter_map(|g| g.parent.as_deref().map(|p| (g.id.as_str(), p)))
            .collect();
        for g in grids {
            let mut cur = g.id.as_str();
            for _ in 0..=grids.len() {
                match parent.get(cur) {
                    Some(p) => cur = p,
                    None => break,
                }
                if cur == g.id {
                    return Some(g.id.clone());
                }
            }
        }
        None
    }
}

/// The length of each grid's parent chain (cut at the number of grids on a cycle).
fn depths(parents: &[Option<usize>]) -> Vec<usize> {
    (0..parents.len())
        .map(|i| {
            let (mut g, mut d) = (i, 0);
            while let Some(p) = parents[g] {
                if d >= parents.len() {
                    break;
                }
                g = p;
                d += 1;
            }
            d
        })
        .collect()
}

#[cfg(test)]
impl GridIndex {
    /// A tree without polygons from `(id, parent)` pairs (each grid named by its id), for
    /// tests.
    pub(crate) fn tree(grids: &[(&str, Option<&str>)]) -> GridIndex {
        let grids: Vec<GridConfig> = grids
            .iter()
            .map(|(id, parent)| GridConfig {
                id: id.to_string(),
                name: id.to_string(),
                parent: parent.map(str::to_string),
                polygon: vec![],
            })
            .collect();
        GridIndex::new(&grids)
    }

    /// A county, two towns and three communities (`a-1`, `a-2` in `town-a`; `b-1` in
    /// `town-b`), for tests.
    pub(crate) fn test_county() -> GridIndex {
        GridIndex::tree(&[
            ("county", None),
            ("town-a", Some("county")),
            ("town-b", Some("county")),
            ("a-1", Some("town-a")),
            ("a-2", Some("town-a")),
            ("b-1", Some("town-b")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(id: &str, parent: Option<&str>) -> GridConfig {
        GridConfig {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
            polygon: vec![],
        }
    }

    fn tree() -> GridIndex {
        GridIndex::new(&[
            grid("county", None),
            grid("town", Some("county")),
            grid("c1", Some("town")),
            grid("other", None),
        ])
    }

    #[test]
    fn descendants_match_their_ancestors() {
        let g = tree();
        assert!(g.is_within("c1", "county"));
        assert!(g.is_within("c1", "c1"));
        assert!(!g.is_within("county", "c1"));
        assert!(!g.is_within("c1", "other"));
        assert!(!g.is_within("missing", "county"));
    }

    #[test]
    fn depth_parent_and_ancestors() {
        let g = tree();
        assert_eq!(g.depth("county"), Some(0));
        assert_eq!(g.depth("c1"), Some(2));
        assert_eq!(g.depth("other"), Some(0));
        assert_eq!(g.depth("missing"), None);
        assert_eq!(g.parent("c1"), Some("town"));
        assert_eq!(g.parent("county"), None);
        assert_eq!(g.parent("missing"), None);
        assert_eq!(g.ancestor_at("c1", 0), Some("county"));
        assert_eq!(g.ancestor_at("c1", 1), Some("town"));
        assert_eq!(g.ancestor_at("c1", 2), Some("c1"));
        assert_eq!(g.ancestor_at("c1", 3), None, "deeper than the grid");
        assert_eq!(g.ancestor_at("town", 2), None);
        assert_eq!(g.ancestor_at("missing", 0), None);
        // The same by index.
        let ix = |id: &str| g.index_of(id).expect("known grid");
        assert_eq!(g.parent_index(ix("c1")), Some(ix("town")));
        assert_eq!(g.parent_index(ix("county")), None);
        assert_eq!(g.parent_index(g.len()), None, "out of range");
        assert_eq!(g.ancestor_index(ix("c1"), 0), Some(ix("county")));
        assert_eq!(g.ancestor_index(ix("c1"), 2), Some(ix("c1")));
        assert_eq!(g.ancestor_index(ix("town"), 2), None);
        assert_eq!(g.ancestor_index(g.len(), 0), None, "out of range");
    }

    #[test]
    fn id_at_inverts_index_of() {
        let g = tree();
        for id in ["county", "town", "c1", "other"] {
            let i = g.index_of(id).unwrap();
            assert_eq!(g.id_at(i), Some(id));
        }
        assert_eq!(g.id_at(4), None);
    }

    #[test]
    fn cycles_are_found_and_do_not_hang_the_index() {
        let looped = [grid("a", Some("b")), grid("b", Some("a"))];
        assert_eq!(GridIndex::find_cycle(&looped), Some("a".into()));
        assert_eq!(
            GridIndex::find_cycle(&[grid("a", None), grid("b", Some("a"))]),
            None
        );
        assert_eq!(GridIndex::new(&looped).depth("a"), Some(2));
    }
}
