//! The controller (issue 4); not yet written.
