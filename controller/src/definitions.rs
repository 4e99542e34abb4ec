//! Definition parsing and checking live in `ick-definitions`, shared with
//! `icktool apply`; the controller's errors take them in as they are.

pub use ick_definitions::{
    DefinitionError, canonical, check_name, check_project_graph, parse_pipeline, parse_project,
};

use crate::error::ControllerError;

impl From<DefinitionError> for ControllerError {
    fn from(e: DefinitionError) -> Self {
        ControllerError::InvalidDefinition {
            message: e.message,
            line: e.line,
            column: e.column,
        }
    }
}
