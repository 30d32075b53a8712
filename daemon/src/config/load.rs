//! Reading a config file: every error, each with its file, line and field.
//!
//! serde stops at the first error, so when the whole file does not deserialize, each
//! top-level section and each `[[array]]` element is deserialized on its own to collect the
//! errors of all of them. Field paths (`grids[1].name`) are mapped back to lines with
//! `toml_edit`'s spans.

use std::{fmt, path::Path};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::{
    ApiConfig, CameraConfig, Config, CorrelationConfig, DepartmentConfig, GridConfig,
    IncidentsConfig, LogConfig, MqttConfig, RuleConfig, SensorConfig, StatsConfig, StoreConfig,
    TokenConfig, VideoConfig,
};
use crate::domain::GridIndex;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The field, as a path: `mqtt.port`, `grids[3].parent`; empty for syntax errors.
    pub field: String,
    /// 1-based line of the field in the file, when it is in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// A config file that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", render(.file, .issues))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem, in file order where known.
        issues: Vec<ConfigIssue>,
    },
}

impl ConfigError {
    /// The problems found (empty for I/O errors).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { issues, .. } => issues,
        }
    }
}

fn render(file: &str, issues: &[ConfigIssue]) -> String {
    let mut out = String::new();
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let loc = match issue.line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_string(),
        };
        if issue.field.is_empty() {
            out.push_str(&format!("{loc}: {}", issue.message));
        } else {
            out.push_str(&format!("{loc}: {}: {}", issue.field, issue.message));
        }
    }
    out
}

/// Reads and validates the config file at `path`: its text ([`load_str`]), then what it
/// points to: the PEM files it names are read, paths are taken relative to its folder, and
/// the tokens of `api.tokens_file` join `[[tokens]]`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    let mut cfg = load_str(&text, &file)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    super::security::resolve_paths(&mut cfg, dir);
    let issues = Lines::new(&text).issues(super::security::check_files(&cfg));
    if !issues.is_empty() {
        return Err(ConfigError::Invalid { file, issues });
    }
    if let Some(tokens_file) = cfg.api.tokens_file.clone() {
        let extra = load_token_file(&tokens_file, &cfg.tokens)?;
        cfg.tokens.extend(extra);
    }
    Ok(cfg)
}

/// Reads a token file (`[[tokens]]` only); a token that is also in `inline` (the
/// config's own) is a duplicate.
pub fn load_token_file(
    path: &Path,
    inline: &[TokenConfig],
) -> Result<Vec<TokenConfig>, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    let lines = Lines::new(&text);
    let parsed: Result<super::security::TokenFile, _> = match toml::de::Deserializer::parse(&text) {
        Ok(de) => serde_path_to_error::deserialize(de).map_err(|e| {
            let (field, message) = describe("", e);
            lines.issues(vec![(field.trim_start_matches('.').to_string(), message)])
        }),
        Err(e) => Err(vec![ConfigIssue {
            field: String::new(),
            line: e.span().map(|s| line_of(&text, s.start)),
            message: e.message().trim().to_string(),
        }]),
    };
    let tokens = parsed
        .map_err(|issues| ConfigError::Invalid {
            file: file.clone(),
            issues,
        })?
        .tokens;
    let mut seen = std::collections::HashSet::new();
    super::security::validate_tokens(inline, "tokens", &mut seen, &mut Vec::new());
    let mut errs = Vec::new();
    super::security::validate_tokens(&tokens, "tokens", &mut seen, &mut errs);
    if errs.is_empty() {
        Ok(tokens)
    } else {
        Err(ConfigError::Invalid {
            file,
            issues: lines.issues(errs),
        })
    }
}

/// Parses and validates config text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let invalid = |issues| ConfigError::Invalid {
        file: file.to_string(),
        issues,
    };
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            return Err(invalid(vec![ConfigIssue {
                field: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            }]))
        }
    };
    let mut cfg: Config = match serde_path_to_error::deserialize(de) {
        Ok(cfg) => cfg,
        Err(_) => return Err(invalid(collect_all(text))),
    };
    let grids = GridIndex::new(&cfg.grids);
    let mut issues = Lines::new(text).issues(cfg.validate_with(&grids));
    if issues.is_empty() {
        super::cameras::place(&mut cfg.cameras, &grids);
        Ok(cfg)
    } else {
        issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
        Err(invalid(issues))
    }
}

/// Deserializes each section and array element on its own and gathers every error.
fn collect_all(text: &str) -> Vec<ConfigIssue> {
    let lines = Lines::new(text);
    let mut issues = Vec::new();
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            return vec![ConfigIssue {
                field: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            }]
        }
    };
    for (key, value) in &table {
        let mut errs = Vec::new();
        match key.as_str() {
            "store" => check::<StoreConfig>(key, value, &mut errs),
            "api" => check::<ApiConfig>(key, value, &mut errs),
            "mqtt" => check::<MqttConfig>(key, value, &mut errs),
            "correlation" => check::<CorrelationConfig>(key, value, &mut errs),
            "log" => check::<LogConfig>(key, value, &mut errs),
            "grids" => check_each::<GridConfig>(key, value, &mut errs),
            "tokens" => check_each::<TokenConfig>(key, value, &mut errs),
            "client_certs" => check_each::<super::ClientCertConfig>(key, value, &mut errs),
            "video" => check::<VideoConfig>(key, value, &mut errs),
            "cameras" => check_each::<CameraConfig>(key, value, &mut errs),
            "rules" => check_each::<RuleConfig>(key, value, &mut errs),
            "incidents" => check::<IncidentsConfig>(key, value, &mut errs),
            "stats" => check::<StatsConfig>(key, value, &mut errs),
            "departments" => check_each::<DepartmentConfig>(key, value, &mut errs),
            "sensors" => check_each::<SensorConfig>(key, value, &mut errs),
            other => errs.push((
                other.to_string(),
                format!(
                    "unknown section `{other}`, expected one of store, api, mqtt, correlation, log, grids, tokens, client_certs, video, cameras, sensors, rules, incidents, stats, departments"
                ),
            )),
        }
        for (field, message) in errs {
            issues.push(ConfigIssue {
                line: lines.line_of_path(&field),
                field,
                message,
            });
        }
    }
    issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
    issues
}

fn check<T: DeserializeOwned>(prefix: &str, value: &toml::Value, errs: &mut Vec<(String, String)>) {
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(value.clone()) {
        errs.push(describe(prefix, e));
    }
}

fn check_each<T: DeserializeOwned>(
    prefix: &str,
    value: &toml::Value,
    errs: &mut Vec<(String, String)>,
) {
    match value.as_array() {
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                check::<T>(&format!("{prefix}[{i}]"), item, errs);
            }
        }
        None => errs.push((prefix.to_string(), "expected an array of tables".into())),
    }
}

/// Field path and message of one serde error; an unknown field's name joins the path.
fn describe(prefix: &str, e: serde_path_to_error::Error<toml::de::Error>) -> (String, String) {
    let mut path = prefix.to_string();
    for seg in e.path().iter() {
        match seg {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                path.push('.');
                path.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    let message = e.inner().message().trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let field = &rest[..end];
            if !path.ends_with(&format!(".{field}")) {
                path.push('.');
                path.push_str(field);
            }
        }
    }
    (path, message)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Maps field paths to lines through `toml_edit`'s spans.
struct Lines<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// (field, message) pairs as issues with their lines.
    fn issues(&self, errs: Vec<(String, String)>) -> Vec<ConfigIssue> {
        errs.into_iter()
            .map(|(field, message)| ConfigIssue {
                line: self.line_of_path(&field),
                field,
                message,
            })
            .collect()
    }

    /// The line of the deepest part of `path` that is in the file.
    fn line_of_path(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut span = None;
        let mut item: Option<&toml_edit::Item> = None;
        let mut table: Option<&toml_edit::Table> = Some(doc.as_table());
        for part in split_path(path) {
            match part {
                PathPart::Key(k) => {
                    let found = match (table, item) {
                        (Some(t), _) => t.get_key_value(k),
                        (None, Some(it)) => it.as_table_like().and_then(|t| t.get_key_value(k)),
                        _ => None,
                    };
                    let Some((key, value)) = found else { break };
                    span = key.span().or(value.span()).or(span);
                    item = Some(value);
                    table = value.as_table();
                }
                PathPart::Index(i) => {
                    let Some(it) = item else { break };
                    if let Some(aot) = it.as_array_of_tables() {
                        let Some(t) = aot.get(i) else { break };
                        span = t.span().or(span);
                        table = Some(t);
                        item = None;
                    } else if let Some(arr) = it.as_array() {
                        let Some(v) = arr.get(i) else { break };
                        span = v.span().or(span);
                        table = None;
                        item = None;
                    } else {
                        break;
                    }
                }
            }
        }
        span.map(|s| line_of(self.text, s.start))
    }
}

enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<PathPart<'_>> {
    let mut parts = Vec::new();
    for piece in path.split('.') {
        let (name, mut rest) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        if !name.is_empty() {
            parts.push(PathPart::Key(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                parts.push(PathPart::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    parts
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
