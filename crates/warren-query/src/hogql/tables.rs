//! Which table each name in a user's FROM clauses reads, resolved the way
//! SQL scopes them: a name is a common table expression when a `WITH` of
//! an enclosing query defines it, one of Warren's tables ([`TABLES`]) when
//! it is not, and refused otherwise. Backends that scope a table by
//! substitution do it here, on the syntax tree, so no text of the user's is
//! ever searched or replaced.

use std::ops::ControlFlow;

use warren_store::datafusion::sql::sqlparser::ast::{
    visit_relations, ObjectNamePart, Query, TableFactor, VisitMut, VisitorMut,
};

use super::TABLES;
use crate::QueryError;

/// Calls `on_table` with every FROM item that names one of [`TABLES`] (and
/// the table's name), innermost queries included; refuses names that are
/// neither such a table nor a CTE in scope.
pub(crate) fn resolve_tables(
    query: &mut Query,
    on_table: &mut dyn FnMut(&mut TableFactor, &str) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    let mut resolver = Resolver { scopes: Vec::new(), on_table };
    match query.visit(&mut resolver) {
        ControlFlow::Break(problem) => Err(problem),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Resolver<'a> {
    /// The CTE names each enclosing query defines, outermost first.
    scopes: Vec<Vec<String>>,
    on_table: &'a mut dyn FnMut(&mut TableFactor, &str) -> Result<(), QueryError>,
}

impl VisitorMut for Resolver<'_> {
    type Break = QueryError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<QueryError> {
        let names = match cte_names(query) {
            Ok(names) => names,
            Err(problem) => return ControlFlow::Break(problem),
        };
        self.scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<QueryError> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<QueryError> {
        let TableFactor::Table { name, .. } = factor else { return ControlFlow::Continue(()) };
        let table = match name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident.value.clone(),
            _ => return ControlFlow::Break(unknown_table(&name.to_string())),
        };
        if self.scopes.iter().any(|names| names.contains(&table)) {
            return ControlFlow::Continue(());
        }
        if !TABLES.contains(&table.as_str()) {
            return ControlFlow::Break(unknown_table(&table));
        }
        match (self.on_table)(factor, &table) {
            Ok(()) => ControlFlow::Continue(()),
            Err(problem) => ControlFlow::Break(problem),
        }
    }
}

fn unknown_table(name: &str) -> QueryError {
    QueryError::invalid(format!("unknown table {name}: queries read {}", TABLES.join(", ")))
}

/// The CTE names `query` defines, after checking that none of them hides
/// one of Warren's tables and that each reads only CTEs defined before it
/// (a name read before its definition would otherwise be looked up as a
/// table of the engine's own).
fn cte_names(query: &Query) -> Result<Vec<String>, QueryError> {
    let Some(with) = &query.with else { return Ok(Vec::new()) };
    if with.recursive {
        return Err(QueryError::invalid("WITH RECURSIVE is not supported"));
    }
    let names: Vec<String> = with.cte_tables.iter().map(|cte| cte.alias.name.value.clone()).collect();
    for (at, cte) in with.cte_tables.iter().enumerate() {
        let name = &names[at];
        if TABLES.contains(&name.as_str()) {
            return Err(QueryError::invalid(format!("a WITH name may not hide the table {name}")));
        }
        if names[..at].contains(name) {
            return Err(QueryError::invalid(format!("WITH names {name} twice")));
        }
        if cte.from.is_some() || cte.materialized.is_some() || !cte.alias.columns.is_empty() {
            return Err(QueryError::invalid(format!("WITH {name}: only `name AS (SELECT …)` is supported")));
        }
        let mut later = None;
        let _ = visit_relations(&*cte.query, |relation| {
            if let [ObjectNamePart::Identifier(ident)] = relation.0.as_slice() {
                if names[at..].contains(&ident.value) {
                    later = Some(ident.value.clone());
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(later) = later {
            return Err(QueryError::invalid(format!(
                "WITH {name} reads {later}, which is not defined before it"
            )));
        }
    }
    Ok(names)
}
