//! Build parameters: which names may be one. A parameter becomes an
//! environment variable of every action, so a name that a shell, the
//! dynamic loader, git or an interpreter reads on start would let whoever
//! triggers a build run code on the build host; those names are reserved.
//! This is the one list: the controller refuses them in definitions and
//! triggers, and the worker-manager never exports them.

/// Names no parameter may have (exact, case-sensitive, as environment
/// variables are).
pub const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "CDPATH",
    "PS4",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "TMPDIR",
    "LANG",
    "LANGUAGE",
    "TZ",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "RUSTC_WRAPPER",
    "RUSTFLAGS",
    "CARGO_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Prefixes no parameter name may start with.
pub const RESERVED_PREFIXES: &[&str] = &[
    "BASH_FUNC_",
    "BASH_",
    "LD_",
    "GIT_",
    "PYTHON",
    "PERL5",
    "PERL_",
    "RUBY",
    "GEM_",
    "SSL_",
    "ICK_",
    "LC_",
    "DYLD_",
];

/// Whether `name` has the shape of a parameter: letters, digits and `_`,
/// not starting with a digit, at most 100 characters (it becomes an
/// environment variable on the worker).
pub fn is_valid_parameter(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is reserved: see [`RESERVED_NAMES`] and [`RESERVED_PREFIXES`].
pub fn is_reserved_parameter(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Checks a parameter name; the error says what is wrong with it.
pub fn check_parameter(name: &str) -> Result<(), String> {
    if !is_valid_parameter(name) {
        return Err(format!(
            "parameter name {name:?} is not valid: use letters, digits and '_', not starting \
             with a digit (at most 100 characters)"
        ));
    }
    if is_reserved_parameter(name) {
        return Err(format!(
            "parameter name {name:?} is reserved: it would change how programs on the build \
             host start (reserved: {}, and names starting with {})",
            RESERVED_NAMES.join(" "),
            RESERVED_PREFIXES
                .iter()
                .map(|p| format!("{p}*"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(())
}

/// The parameters a webhook sets on the builds it triggers; every project
/// may be given them, declared or not.
pub const WEBHOOK_PARAMETERS: [&str; 3] = ["git_url", "git_ref", "git_commit"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_shell_git_and_interpreter_variables_are_reserved() {
        for name in [
            "LD_PRELOAD",
            "BASH_ENV",
            "BASH_FUNC_x%%",
            "PATH",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "RUBYOPT",
            "NODE_OPTIONS",
            "SSL_CERT_FILE",
            "ICK_PARAMS",
            "TMPDIR",
            "IFS",
        ] {
            assert!(is_reserved_parameter(name), "{name}");
        }
        for name in ["git_url", "git_ref", "path", "version", "TARGET", "Debug"] {
            assert!(!is_reserved_parameter(name), "{name}");
            assert!(check_parameter(name).is_ok(), "{name}");
        }
        let err = check_parameter("LD_PRELOAD").expect_err("reserved");
        assert!(err.contains("reserved"), "{err}");
        assert!(check_parameter("1x").is_err());
        assert!(check_parameter("a-b").is_err());
    }

    #[test]
    fn the_readme_lists_every_reserved_name() {
        let readme = include_str!("../../README.md");
        for name in RESERVED_NAMES.iter().chain(RESERVED_PREFIXES) {
            assert!(
                readme
                    .split_whitespace()
                    .any(|w| w.trim_matches('`') == *name),
                "README.md does not list {name}"
            );
        }
    }
}
