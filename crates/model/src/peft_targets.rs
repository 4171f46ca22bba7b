//! Which modules a PEFT adapter adapts, matched as peft 0.21 matches them
//! (`peft.tuners.tuners_utils.check_target_module_exists`): a list of `target_modules` entries
//! matches a module whose dotted path equals an entry or ends with `.` + the entry (so both
//! `q_proj` and peft's full paths written for `all-linear`, `model.layers.0.self_attn.o_proj`,
//! work); a string is a regular expression that must match the whole path, except the string
//! `all-linear`; `exclude_modules` removes modules by the same rules.

use regex::Regex;
use serde_json::Value;

/// One side of the match: names matched by dotted suffix, a full-match regular expression, or
/// every linear layer.
#[derive(Debug, Clone)]
enum Patterns {
    All,
    Names(Vec<String>),
    Regex(Regex),
}

impl Patterns {
    fn matches(&self, path: &str) -> bool {
        match self {
            Patterns::All => true,
            Patterns::Names(names) => names
                .iter()
                .any(|n| path == n || path.ends_with(&format!(".{n}"))),
            Patterns::Regex(regex) => regex
                .find(path)
                .is_some_and(|m| m.start() == 0 && m.end() == path.len()),
        }
    }

    /// Reads `target_modules` / `exclude_modules`; `Err(problem)` for the key named by the caller.
    fn parse(value: Option<&Value>, all_allowed: bool) -> Result<Option<Self>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s == "all-linear" && all_allowed => Ok(Some(Patterns::All)),
            Some(Value::String(s)) => {
                // Anchored, as Python's re.fullmatch.
                let regex = Regex::new(&format!("^(?:{s})$")).map_err(|e| {
                    format!(
                        "the regular expression {s:?} is not supported: {}",
                        e.to_string().lines().last().unwrap_or("invalid")
                    )
                })?;
                Ok(Some(Patterns::Regex(regex)))
            }
            Some(Value::Array(items)) => {
                let names: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                let names = names.ok_or("must be a list of module names")?;
                Ok(Some(Patterns::Names(names)))
            }
            Some(_) => Err("must be a list of module names or a regular expression".into()),
        }
    }
}

/// The modules an adapter config targets, minus those it excludes.
#[derive(Debug, Clone)]
pub struct PeftTargets {
    targets: Patterns,
    exclude: Option<Patterns>,
}

impl PeftTargets {
    /// Reads `target_modules` and `exclude_modules` from an `adapter_config.json` value;
    /// `Err((key, problem))`.
    pub fn from_config(config: &Value) -> Result<Self, (&'static str, String)> {
        let targets = Patterns::parse(config.get("target_modules"), true)
            .map_err(|p| ("target_modules", p))?
            .ok_or(("target_modules", "missing".to_string()))?;
        let exclude = Patterns::parse(config.get("exclude_modules"), false)
            .map_err(|p| ("exclude_modules", p))?;
        Ok(Self { targets, exclude })
    }

    /// The same matching for `--lora-targets`-style module names.
    pub fn from_names(names: &[String]) -> Self {
        Self {
            targets: Patterns::Names(names.to_vec()),
            exclude: None,
        }
    }

    /// Whether the linear layer at `path` (`model.layers.0.self_attn.q_proj`) is adapted.
    pub fn adapts(&self, path: &str) -> bool {
        self.targets.matches(path) && !self.exclude.as_ref().is_some_and(|e| e.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn targets(config: Value) -> PeftTargets {
        PeftTargets::from_config(&config).unwrap()
    }

    #[test]
    fn names_match_by_dotted_suffix_and_exclusions_apply() {
        let t = targets(json!({
            "target_modules": ["q_proj", "model.layers.1.self_attn.o_proj"],
            "exclude_modules": ["model.layers.0.self_attn.q_proj"]
        }));
        assert!(t.adapts("model.layers.1.self_attn.q_proj"));
        assert!(!t.adapts("model.layers.0.self_attn.q_proj"));
        assert!(t.adapts("model.layers.1.self_attn.o_proj"));
        assert!(!t.adapts("model.layers.0.self_attn.o_proj"));
        // A suffix is a whole dotted component, not a substring.
        assert!(!t.adapts("model.layers.1.self_attn.qq_proj"));
    }

    #[test]
    fn strings_are_full_match_regexes_except_all_linear() {
        let t = targets(json!({"target_modules": r".*\.(q_proj|v_proj)"}));
        assert!(t.adapts("model.layers.3.self_attn.v_proj"));
        assert!(!t.adapts("model.layers.3.self_attn.v_proj_extra"));
        assert!(!t.adapts("model.layers.3.mlp.up_proj"));
        let all = targets(json!({"target_modules": "all-linear", "exclude_modules": r".*mlp.*"}));
        assert!(all.adapts("model.layers.0.self_attn.o_proj"));
        assert!(!all.adapts("model.layers.0.mlp.down_proj"));
        let bad = PeftTargets::from_config(&json!({"target_modules": "(?<=x)q"}));
        assert_eq!(bad.unwrap_err().0, "target_modules");
    }
}
