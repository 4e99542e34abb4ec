//! `ick-definitions`: projects and pipelines as users write them. Parsing
//! the YAML (with line and column on a mistake) and every check that needs
//! nothing but the definitions themselves, so that the controller, which
//! stores them, and `icktool apply`, which checks before it sends, apply
//! the same rules.

mod entry;
pub mod files;
pub mod graph;
pub mod parse;
pub mod refs;
pub mod triggers;

pub use files::{Definition, FileError, Spec, check_duplicates, kind_name, parse_file, read_file};
pub use graph::{check_project_graph, find_cycle, needs_cycle};
pub use parse::{MAX_NESTING, canonical, check_name, parse_pipeline, parse_project};

/// A definition that does not parse or is not valid. YAML errors, and the
/// checks that can tell, say where in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DefinitionError {
    /// What is wrong, for a person to read.
    pub message: String,
    /// The line, from 1.
    pub line: Option<usize>,
    /// The column, from 1.
    pub column: Option<usize>,
}

impl DefinitionError {
    /// An error that has no position.
    pub fn new(message: impl Into<String>) -> Self {
        DefinitionError {
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// An error at `line` and `column`.
    pub fn at(message: impl Into<String>, line: usize, column: usize) -> Self {
        DefinitionError {
            message: message.into(),
            line: Some(line),
            column: Some(column),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = DefinitionError> = std::result::Result<T, E>;
