//! The IDP's audit log, `GET /audit`: every change to clients, users,
//! groups and passwords (recorded by the store in the change's own
//! transaction), for `idp:admin`.

use ick_api::audit::{AuditList, AuditQuery};

use crate::error::IdpError;
use crate::store::Store;

/// A page of the log, newest first.
pub async fn list(store: &Store, query: &AuditQuery) -> Result<AuditList, IdpError> {
    if query.project.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(IdpError::BadRequest(
            "the IDP's audit log has no projects: ask the controller's GET /audit for a \
             project's changes"
                .into(),
        ));
    }
    let filter = query.filter().map_err(IdpError::BadRequest)?;
    let rows = store.audit(&filter, filter.limit + 1).await?;
    Ok(AuditList::page(rows, &filter))
}
