//! Which tables a role may read, the one rule both doors use: queries naming a table the caller may
//! not read are refused, and every listing (Flight SQL GetTables, `information_schema.tables` and
//! `.columns`) is made from a [`role_view`] of the catalog that holds only the tables the role reads,
//! so a reader does not learn that `audit_log` exists.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use tonic::Status;

use crate::config::Role;
use crate::front_door::audit::AUDIT_TABLE;

/// Tables only the admin role reads: the audit log holds every user's SQL as sent, literals included.
const ADMIN_TABLES: &[&str] = &[AUDIT_TABLE];

/// Whether a caller of `role` may read `table` (an unqualified name, any case).
pub(crate) fn may_read(role: Role, table: &str) -> bool {
    role == Role::Admin || !ADMIN_TABLES.iter().any(|admin_only| admin_only.eq_ignore_ascii_case(table))
}

/// The refusal of a query naming `table`, which the caller's role may not read.
pub(crate) fn read_refused(table: &str) -> Status {
    Status::permission_denied(format!("{table} is readable by the admin role only"))
}

/// `base` (its planner and settings) over the catalogs of `catalogs` as `role` sees them: only the
/// tables it may read. Listings and `information_schema` read through this; queries of data do not
/// need it, as they are refused by [`may_read`] before planning.
pub(crate) fn role_view(base: &SessionContext, catalogs: &SessionContext, role: Role) -> SessionContext {
    let view = RoleCatalogList { inner: catalogs.state().catalog_list().clone(), role };
    let state = SessionStateBuilder::new_from_existing(base.state()).with_catalog_list(Arc::new(view)).build();
    SessionContext::new_with_state(state)
}

/// A catalog list as one role sees it. It registers nothing: a view made for one query or listing.
#[derive(Debug)]
struct RoleCatalogList {
    inner: Arc<dyn CatalogProviderList>,
    role: Role,
}

impl CatalogProviderList for RoleCatalogList {
    fn register_catalog(&self, _name: String, _catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let inner = self.inner.catalog(name)?;
        Some(Arc::new(RoleCatalog { inner, role: self.role }))
    }
}

/// A catalog as one role sees it.
#[derive(Debug)]
struct RoleCatalog {
    inner: Arc<dyn CatalogProvider>,
    role: Role,
}

impl CatalogProvider for RoleCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let inner = self.inner.schema(name)?;
        Some(Arc::new(RoleSchema { inner, role: self.role }))
    }
}

/// A schema holding only the tables one role may read.
#[derive(Debug)]
struct RoleSchema {
    inner: Arc<dyn SchemaProvider>,
    role: Role,
}

#[async_trait]
impl SchemaProvider for RoleSchema {
    fn owner_name(&self) -> Option<&str> {
        self.inner.owner_name()
    }

    fn table_names(&self) -> Vec<String> {
        self.inner.table_names().into_iter().filter(|name| may_read(self.role, name)).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if !may_read(self.role, name) {
            return Ok(None);
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        may_read(self.role, name) && self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests;
