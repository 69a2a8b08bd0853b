//! The runtime file: the rules as changed at run time, so a restart keeps them. TOML, `[[rules]]`
//! tables like `[[limits.rules]]`; written whole to a temporary file and renamed over the old one,
//! so a crash mid-write leaves the previous file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Limits, RuleConfig, validate_rules};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    /// The rules, in order.
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

const HEADER: &str = "# PeakGate limits rules, written by the proxy when they change at run time.\n\
# While this file exists it replaces [[limits.rules]] of peakgate.toml at start.\n\n";

/// The rules of the runtime file at `path`, validated; `None` when there is no such file.
pub fn read_runtime_file(path: &Path) -> Result<Option<Vec<RuleConfig>>, Error> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: shown,
                source,
            });
        }
    };
    let file: RuntimeFile = toml::from_str(&text).map_err(|e| Error::Parse {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let errs = validate_rules(&file.rules, "rules", Some(&text));
    if !errs.is_empty() {
        return Err(Error::Invalid(
            errs.into_iter().map(|e| format!("{shown}: {e}")).collect(),
        ));
    }
    Ok(Some(file.rules))
}

/// Writes `rules` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_runtime_file(path: &Path, rules: &[RuleConfig]) -> Result<(), Error> {
    let shown = path.display().to_string();
    let body = toml::to_string(&RuntimeFile {
        rules: rules.to_vec(),
    })
    .map_err(|e| Error::Write {
        path: shown.clone(),
        source: std::io::Error::other(e),
    })?;
    let tmp = temporary_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(HEADER.as_bytes())?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Write {
            path: shown,
            source,
        }
    })
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl Limits {
    /// Writes the current rules to the runtime file at `path`.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_runtime_file(path, &self.rules())
    }

    /// Replaces the rules with those of the runtime file at `path`, if it exists (returns whether
    /// it did). A broken file is an error and changes nothing.
    pub fn load_runtime(&self, path: &Path) -> Result<bool, Error> {
        match read_runtime_file(path)? {
            Some(rules) => {
                self.replace_rules(rules)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
