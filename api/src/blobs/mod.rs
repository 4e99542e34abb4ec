//! Blobs and refs: wire types and the streaming, resumable client (owned by the artifact-store work).
