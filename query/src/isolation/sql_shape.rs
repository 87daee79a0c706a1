//! The size and depth a statement may have before DataFusion plans it.
//!
//! sqlparser limits its own recursion, but a chain such as `1+1+…+1` or
//! `SELECT 1 UNION ALL SELECT 1 …` parses in a loop into a tree as deep as
//! it is long, and the planner and optimizer then recurse down it: 20 000
//! terms overflow a 2 MiB stack and abort the process. Statements are
//! therefore measured first — length, expression depth, set-operation
//! depth — and refused with a 400 past the limits. The query threads' stacks
//! are sized well above what the limits allow.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};

/// What a statement may be.
#[derive(Debug, Clone, Copy)]
pub struct ShapeLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// Refuses SQL text over the length limit (before parsing it).
pub fn check_length(sql: &str, limits: ShapeLimits) -> Result<(), String> {
    if sql.len() > limits.max_bytes {
        return Err(format!(
            "the statement is {} bytes long, over the limit of {} ([query] max_sql_bytes)",
            sql.len(),
            limits.max_bytes
        ));
    }
    Ok(())
}

/// Refuses a parsed statement whose expressions or set operations nest
/// deeper than the limit.
pub fn check_depth(statement: &Statement, limits: ShapeLimits) -> Result<(), String> {
    let mut depth = Depth {
        current: 0,
        max: limits.max_depth,
    };
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut depth),
        Statement::Explain(e) => return check_depth(&e.statement, limits),
        // DDL and COPY are refused later as not read-only.
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(what) => Err(format!(
            "the statement's {what} nest more than {} deep ([query] max_expr_depth); \
             split it or use IN (…) lists",
            limits.max_depth
        )),
    }
}

struct Depth {
    current: usize,
    max: usize,
}

/// How deep a query's UNION / INTERSECT / EXCEPT chain goes; walked with a
/// stack of its own, not recursion.
fn set_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 1usize)];
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        if let SetExpr::SetOperation { left, right, .. } = node {
            stack.push((left, d + 1));
            stack.push((right, d + 1));
        }
    }
    deepest
}

impl Visitor for Depth {
    type Break = &'static str;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Self::Break> {
        if set_depth(&query.body) > self.max {
            return ControlFlow::Break("set operations (UNION, INTERSECT, EXCEPT)");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Self::Break> {
        self.current += 1;
        if self.current > self.max {
            // Stops the walk here: it never goes deeper than the limit.
            return ControlFlow::Break("expressions");
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Self::Break> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    const LIMITS: ShapeLimits = ShapeLimits {
        max_bytes: 1 << 20,
        max_depth: 200,
    };

    fn shape(sql: &str) -> Result<(), String> {
        check_length(sql, LIMITS)?;
        let mut statements = DFParser::parse_sql(sql).map_err(|e| e.to_string())?;
        let statement = statements.pop_front().ok_or("no statement")?;
        check_depth(&statement, LIMITS)
    }

    #[test]
    fn deep_chains_are_refused_shallow_ones_pass() {
        // On a thread with room: the test measures the check, not the stack.
        let out = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let plus = format!("SELECT 1{}", "+1".repeat(20_000));
                let e = shape(&plus).unwrap_err();
                assert!(e.contains("expressions nest more than 200"), "{e}");

                let ands = format!("SELECT 1 WHERE {}", vec!["true"; 300].join(" AND "));
                assert!(shape(&ands).is_err());

                let unions = vec!["SELECT 1"; 500].join(" UNION ALL ");
                let e = shape(&unions).unwrap_err();
                assert!(e.contains("set operations"), "{e}");

                shape("SELECT a + b * (c - 1) FROM t WHERE x IN (1, 2, 3) AND y LIKE 'z%'")
                    .unwrap();
                shape(&vec!["SELECT 1"; 50].join(" UNION ALL ")).unwrap();
                let e = shape(&"x".repeat(2 << 20)).unwrap_err();
                assert!(e.contains("max_sql_bytes"), "{e}");
            })
            .unwrap()
            .join();
        out.unwrap();
    }
}
