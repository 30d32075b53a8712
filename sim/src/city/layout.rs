//! Layout and naming of the demo city: where the county sits, how a rectangle is tiled by
//! its children, and the town and community names drawn from.

/// Centre of the county, `[lon, lat]` (Anji).
pub(super) const CENTRE: [f64; 2] = [119.68, 30.64];
/// Size of one town tile, degrees of lon and lat (about 11.5 km × 10 km here).
pub(super) const TOWN_SIZE: [f64; 2] = [0.12, 0.09];

/// Towns, subdistricts and townships: Chinese and English names.
pub(super) const TOWN_NAMES: [(&str, &str); 15] = [
    ("递铺街道", "Dipu Subdistrict"),
    ("昌硕街道", "Changshuo Subdistrict"),
    ("灵峰街道", "Lingfeng Subdistrict"),
    ("孝源街道", "Xiaoyuan Subdistrict"),
    ("孝丰镇", "Xiaofeng Town"),
    ("梅溪镇", "Meixi Town"),
    ("天子湖镇", "Tianzihu Town"),
    ("鄣吴镇", "Zhangwu Town"),
    ("杭垓镇", "Hanggai Town"),
    ("报福镇", "Baofu Town"),
    ("天荒坪镇", "Tianhuangping Town"),
    ("溪龙乡", "Xilong Township"),
    ("上墅乡", "Shangshu Township"),
    ("山川乡", "Shanchuan Township"),
    ("章村镇", "Zhangcun Town"),
];

/// Stems of community and village names; `社区 Community` or `村 Village` is appended.
pub(super) const COMMUNITY_STEMS: [(&str, &str); 24] = [
    ("竹林", "Zhulin"),
    ("白茶", "Baicha"),
    ("凤凰", "Fenghuang"),
    ("桃园", "Taoyuan"),
    ("青山", "Qingshan"),
    ("溪口", "Xikou"),
    ("朝阳", "Chaoyang"),
    ("和平", "Heping"),
    ("长乐", "Changle"),
    ("新港", "Xingang"),
    ("东风", "Dongfeng"),
    ("南湖", "Nanhu"),
    ("西苑", "Xiyuan"),
    ("北门", "Beimen"),
    ("余村", "Yucun"),
    ("横山", "Hengshan"),
    ("黄杜", "Huangdu"),
    ("大竹园", "Dazhuyuan"),
    ("马家", "Majia"),
    ("高禹", "Gaoyu"),
    ("晓墅", "Xiaoshu"),
    ("浒溪", "Huxi"),
    ("双一", "Shuangyi"),
    ("鲁家", "Lujia"),
];

/// Digits of ids numbered up to `n` (at least 2).
pub(super) fn width_for(n: usize) -> usize {
    n.to_string().len().max(2)
}

/// Columns of a near-square layout of `n` cells.
pub(super) fn cols_for(n: usize) -> usize {
    (n as f64).sqrt().ceil() as usize
}

/// Rounded to 6 decimals (about 0.1 m).
pub(super) fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Splits `[west, south, east, north]` into `n` rectangles that tile it exactly: rows of
/// equal height from north to south, each row split into equal widths.
pub(super) fn tile(rect: [f64; 4], n: usize) -> Vec<[f64; 4]> {
    if n == 0 {
        return Vec::new();
    }
    let [west, south, east, north] = rect;
    let cols = cols_for(n);
    let rows = n.div_ceil(cols);
    let row_h = (north - south) / rows as f64;
    let mut out = Vec::with_capacity(n);
    for r in 0..rows {
        let in_row = if r + 1 == rows {
            n - cols * (rows - 1)
        } else {
            cols
        };
        let col_w = (east - west) / in_row as f64;
        let top = north - row_h * r as f64;
        let bottom = if r + 1 == rows { south } else { top - row_h };
        for c in 0..in_row {
            let left = west + col_w * c as f64;
            let right = if c + 1 == in_row { east } else { left + col_w };
            out.push([left, bottom, right, top]);
        }
    }
    out
}

/// Closed counter-clockwise ring of a rectangle.
pub(super) fn ring([w, s, e, n]: [f64; 4]) -> Vec<[f64; 2]> {
    vec![[w, s], [e, s], [e, n], [w, n], [w, s]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_rectangle_without_overlap() {
        let rect = [119.0, 30.0, 120.0, 30.5];
        for n in 1..=30 {
            let tiles = tile(rect, n);
            assert_eq!(tiles.len(), n);
            let area: f64 = tiles.iter().map(|[w, s, e, n]| (e - w) * (n - s)).sum();
            assert!((area - 0.5).abs() < 1e-9, "{n} tiles cover {area}");
            for (i, a) in tiles.iter().enumerate() {
                assert!(a[0] >= rect[0] && a[2] <= rect[2] && a[1] >= rect[1] && a[3] <= rect[3]);
                for b in &tiles[i + 1..] {
                    let overlap_w = a[2].min(b[2]) - a[0].max(b[0]);
                    let overlap_h = a[3].min(b[3]) - a[1].max(b[1]);
                    assert!(
                        overlap_w <= 1e-12 || overlap_h <= 1e-12,
                        "{n}: {a:?} overlaps {b:?}"
                    );
                }
            }
        }
        assert!(tile(rect, 0).is_empty());
        assert_eq!(ring(rect).first(), ring(rect).last());
    }
}
