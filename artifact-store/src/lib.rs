//! The artifact store (issue 3); not yet written.
