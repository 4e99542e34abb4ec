//! Controller API wire types: definitions, builds, logs (owned by the controller work).
