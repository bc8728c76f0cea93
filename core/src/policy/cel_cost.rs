//! A bound on what evaluating CEL may cost, checked before anything is evaluated. The API
//! server meters CEL as it runs and stops an evaluation past its budget (10,000,000 cost units
//! per validation call); the `cel` crate has no such meter, so sealgate bounds the cost from the
//! program and the input it will see, and refuses to start what could exceed the same budget.
//!
//! The bound walks the expression: every node costs 1; a comprehension (`all`, `exists`, `map`,
//! `filter`, …) costs its body times the number of elements it iterates, plus, for the macros
//! that build a list, the copy of the list built so far at each step; a function or operator
//! costs the size of its collection and string operands. The number of elements is exact where
//! the range is a path into the input (`object.spec.containers`, a comprehension variable's
//! field), and otherwise the largest collection (or string, for `split`) in the input. It is an
//! upper bound, not the API server's meter: an expression near the budget may be refused here
//! and admitted there.
//!
//! It also refuses what the `cel` crate cannot evaluate (struct literals, which it panics on).

use std::collections::HashMap;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};

/// Kubernetes' runtime CEL cost budget for one validation call (`RuntimeCELCostBudget`).
pub const BUDGET: u64 = 10_000_000;

/// Refuse an expression the `cel` crate would panic on.
pub fn check(e: &IdedExpr) -> Result<(), String> {
    let mut problem = None;
    walk(e, &mut |e| {
        if let Expr::Struct(s) = &e.expr {
            problem.get_or_insert(format!(
                "message literals ({}{{…}}) are not supported",
                s.type_name
            ));
        }
    });
    problem.map_or(Ok(()), Err)
}

fn walk(e: &IdedExpr, f: &mut dyn FnMut(&IdedExpr)) {
    f(e);
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, f);
            }
            c.args.iter().for_each(|a| walk(a, f));
        }
        Expr::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(e, f);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|e| walk(e, f)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    walk(&m.key, f);
                    walk(&m.value, f);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    walk(&field.value, f);
                }
            }
        }
        Expr::Select(s) => walk(&s.operand, f),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// What an expression may denote, as far as sizes go: some values of the input, or anything
/// up to `items` elements (and strings up to the input's longest).
#[derive(Clone)]
enum Abs<'a> {
    Values(Vec<&'a cel::Value>),
    Any { items: u64, chars: u64 },
}

/// A scalar (no collection to iterate, no string to scan).
const SCALAR: Abs<'static> = Abs::Any { items: 0, chars: 0 };

/// Functions and operators whose result is a bool or a number, whatever their operands.
const SCALAR_RESULTS: &[&str] = &[
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "@not_strictly_false",
    "@in",
    "has",
    "size",
    "matches",
    "startsWith",
    "endsWith",
    "contains",
    "int",
    "uint",
    "double",
    "bool",
    "type",
    "isSorted",
    "sum",
    "min",
    "max",
    "indexOf",
    "lastIndexOf",
    "exists",
    "all",
    "exists_one",
];

/// The largest collection and the longest string in some values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// Elements of the largest list or map.
    pub items: u64,
    /// Bytes of the longest string.
    pub chars: u64,
}

impl Extent {
    /// Of `values` (depth-first, once per evaluation input).
    pub fn of<'a>(values: impl IntoIterator<Item = &'a cel::Value>) -> Extent {
        let mut e = Extent::default();
        let mut stack: Vec<&cel::Value> = values.into_iter().collect();
        while let Some(v) = stack.pop() {
            match v {
                cel::Value::List(l) => {
                    e.items = e.items.max(l.len() as u64);
                    stack.extend(l.iter());
                }
                cel::Value::Map(m) => {
                    e.items = e.items.max(m.map.len() as u64);
                    stack.extend(m.map.values());
                    for k in m.map.keys() {
                        if let cel::objects::Key::String(s) = k {
                            e.chars = e.chars.max(s.len() as u64);
                        }
                    }
                }
                cel::Value::String(s) => e.chars = e.chars.max(s.len() as u64),
                cel::Value::Bytes(b) => e.chars = e.chars.max(b.len() as u64),
                _ => {}
            }
        }
        e
    }

    fn max(self, o: Extent) -> Extent {
        Extent {
            items: self.items.max(o.items),
            chars: self.chars.max(o.chars),
        }
    }
}

/// Bounds the cost of a sequence of expressions over one input: the variables' bounds carry
/// over to the expressions that use them.
pub struct Estimator<'a> {
    roots: HashMap<&'static str, &'a cel::Value>,
    variables: HashMap<String, Abs<'a>>,
    locals: Vec<(String, Abs<'a>)>,
    extent: Extent,
    /// The cost so far.
    pub total: u64,
}

impl<'a> Estimator<'a> {
    /// Over the evaluation's variables (`object`, `oldObject`, `request`, `params`,
    /// `namespaceObject`), whose largest collection and string `extent` says.
    pub fn new(roots: HashMap<&'static str, &'a cel::Value>, extent: Extent) -> Estimator<'a> {
        let params = roots.get("params").map(|p| Extent::of([*p]));
        Estimator {
            roots,
            variables: HashMap::new(),
            locals: Vec::new(),
            extent: params.map_or(extent, |p| extent.max(p)),
            total: 0,
        }
    }

    /// A variable bound before any expression (Gatekeeper's `variables.params`).
    pub fn seed(&mut self, name: &str, value: &'a cel::Value) {
        self.variables
            .insert(name.to_string(), Abs::Values(vec![value]));
    }

    /// Add a composited variable's expression (so `variables.NAME` is bounded by it).
    pub fn variable(&mut self, name: &str, e: &IdedExpr) {
        let (cost, abs) = self.expr(e);
        self.total = self.total.saturating_add(cost);
        self.variables.insert(name.to_string(), abs);
    }

    /// Add an expression.
    pub fn add(&mut self, e: &IdedExpr) {
        let (cost, _) = self.expr(e);
        self.total = self.total.saturating_add(cost);
    }

    fn items(&self, a: &Abs) -> u64 {
        match a {
            Abs::Values(vs) => vs
                .iter()
                .map(|v| match v {
                    cel::Value::List(l) => l.len() as u64,
                    cel::Value::Map(m) => m.map.len() as u64,
                    _ => 0,
                })
                .max()
                .unwrap_or(0),
            Abs::Any { items, .. } => *items,
        }
    }

    fn chars(&self, a: &Abs) -> u64 {
        match a {
            Abs::Values(vs) => vs
                .iter()
                .map(|v| match v {
                    cel::Value::String(s) => s.len() as u64,
                    _ => 0,
                })
                .max()
                .unwrap_or(0),
            Abs::Any { chars, .. } => *chars,
        }
    }

    /// Anything the input may hold.
    fn unknown(&self) -> Abs<'a> {
        Abs::Any {
            items: self.extent.items,
            chars: self.extent.chars,
        }
    }

    /// What iterating `a` binds its variable to: a list's elements, a map's keys.
    fn elements(&self, a: &Abs<'a>) -> Abs<'a> {
        match a {
            Abs::Values(vs) => {
                let mut out = Vec::new();
                for v in vs {
                    match v {
                        cel::Value::List(l) => out.extend(l.iter()),
                        // A map's keys.
                        cel::Value::Map(_) => {
                            return Abs::Any {
                                items: 0,
                                chars: self.extent.chars,
                            };
                        }
                        _ => {}
                    }
                }
                Abs::Values(out)
            }
            Abs::Any { .. } => self.unknown(),
        }
    }

    fn select(&self, a: &Abs<'a>, field: &str) -> Abs<'a> {
        match a {
            Abs::Values(vs) => Abs::Values(
                vs.iter()
                    .filter_map(|v| match v {
                        cel::Value::Map(m) => m.map.get(&cel::objects::Key::from(field)),
                        _ => None,
                    })
                    .collect(),
            ),
            Abs::Any { .. } => self.unknown(),
        }
    }

    fn join(&self, a: Abs<'a>, b: Abs<'a>) -> Abs<'a> {
        match (a, b) {
            (Abs::Values(mut x), Abs::Values(y)) => {
                x.extend(y);
                Abs::Values(x)
            }
            (x, y) => Abs::Any {
                items: self.items(&x).max(self.items(&y)),
                chars: self.chars(&x).max(self.chars(&y)),
            },
        }
    }

    fn expr(&mut self, e: &IdedExpr) -> (u64, Abs<'a>) {
        let any = self.unknown();
        match &e.expr {
            Expr::Literal(cel::common::ast::LiteralValue::String(s)) => (
                1,
                Abs::Any {
                    items: 0,
                    chars: s.inner().len() as u64,
                },
            ),
            Expr::Literal(_) | Expr::Unspecified => (1, SCALAR),
            Expr::Ident(name) => {
                if let Some((_, a)) = self.locals.iter().rev().find(|(n, _)| n == name) {
                    return (1, a.clone());
                }
                match self.roots.get(name.as_str()) {
                    Some(v) => (1, Abs::Values(vec![*v])),
                    None => (1, any),
                }
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && root == "variables"
                    && !self.locals.iter().any(|(n, _)| n == "variables")
                {
                    let a = self.variables.get(&s.field).cloned().unwrap_or(any);
                    return (1, a);
                }
                let (cost, a) = self.expr(&s.operand);
                (cost + 1, self.select(&a, &s.field))
            }
            Expr::List(l) => {
                let cost = l.elements.iter().map(|e| self.expr(e).0).sum::<u64>();
                (
                    cost + 1,
                    Abs::Any {
                        items: l.elements.len() as u64,
                        chars: 0,
                    },
                )
            }
            Expr::Map(m) => {
                let mut cost = 1;
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        cost += self.expr(&m.key).0 + self.expr(&m.value).0;
                    }
                }
                (
                    cost,
                    Abs::Any {
                        items: m.entries.len() as u64,
                        chars: 0,
                    },
                )
            }
            Expr::Struct(_) => (1, any),
            Expr::Call(c) => {
                let mut operands = Vec::new();
                let mut cost: u64 = 1;
                for e in c.target.iter().map(|t| &**t).chain(&c.args) {
                    let (c, a) = self.expr(e);
                    cost = cost.saturating_add(c);
                    operands.push(a);
                }
                // Linear in its collection and string operands.
                for a in &operands {
                    cost = cost
                        .saturating_add(self.items(a))
                        .saturating_add(self.chars(a));
                }
                let abs = match c.func_name.as_str() {
                    operators::INDEX | operators::OPT_INDEX => {
                        operands.first().map_or(any, |a| self.elements(a))
                    }
                    operators::CONDITIONAL if operands.len() == 3 => {
                        let b = operands.pop().unwrap_or(SCALAR);
                        let a = operands.pop().unwrap_or(SCALAR);
                        self.join(a, b)
                    }
                    operators::ADD => Abs::Any {
                        items: operands.iter().map(|a| self.items(a)).sum(),
                        chars: operands.iter().map(|a| self.chars(a)).sum(),
                    },
                    "split" => Abs::Any {
                        items: operands.first().map_or(0, |a| self.chars(a)),
                        chars: operands.first().map_or(0, |a| self.chars(a)),
                    },
                    name if SCALAR_RESULTS.contains(&name) => SCALAR,
                    // Anything else is bounded by its operands (a list function's list, a
                    // string function's string).
                    _ => Abs::Any {
                        items: operands.iter().map(|a| self.items(a)).max().unwrap_or(0),
                        chars: operands.iter().map(|a| self.chars(a)).sum(),
                    },
                };
                (cost, abs)
            }
            Expr::Comprehension(c) => {
                let (range_cost, range) = self.expr(&c.iter_range);
                let n = self.items(&range);
                let (init_cost, _) = self.expr(&c.accu_init);
                // map and filter build a list, copied at each step.
                let builds_list = matches!(c.accu_init.expr, Expr::List(_));
                let element = self.elements(&range);
                self.locals.push((c.iter_var.clone(), element));
                self.locals.push((
                    c.accu_var.clone(),
                    Abs::Any {
                        items: if builds_list { n } else { 0 },
                        chars: 0,
                    },
                ));
                let (cond_cost, _) = self.expr(&c.loop_cond);
                let (step_cost, _) = self.expr(&c.loop_step);
                let (result_cost, _) = self.expr(&c.result);
                self.locals.truncate(self.locals.len() - 2);
                let step = cond_cost
                    .saturating_add(step_cost)
                    .saturating_add(if builds_list { n } else { 1 });
                let cost = range_cost
                    .saturating_add(init_cost)
                    .saturating_add(n.saturating_mul(step))
                    .saturating_add(result_cost);
                (
                    cost,
                    Abs::Any {
                        items: if builds_list { n } else { 0 },
                        chars: 0,
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn list(n: usize, item: cel::Value) -> cel::Value {
        cel::Value::List(Arc::new(vec![item; n]))
    }

    fn map(entries: Vec<(&str, cel::Value)>) -> cel::Value {
        let m: HashMap<String, cel::Value> = entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        cel::Value::Map(m.into())
    }

    fn cost(expr: &str, object: &cel::Value) -> u64 {
        let program = cel::Program::compile(expr).unwrap();
        let roots = HashMap::from([("object", object)]);
        let mut e = Estimator::new(roots, Extent::of([object]));
        e.add(program.expression());
        e.total
    }

    #[test]
    fn bounds_follow_the_paths_into_the_input() {
        let container = map(vec![(
            "image",
            cel::Value::String(Arc::new("nginx".into())),
        )]);
        let small = map(vec![(
            "spec",
            map(vec![
                ("containers", list(3, container.clone())),
                ("tolerations", list(5000, cel::Value::Null)),
            ]),
        )]);
        let one = cost("object.spec.containers.all(c, c.image != '')", &small);
        // The path's own size counts, not the input's largest list.
        assert!(one < 100, "{one}");
        let nested = cost(
            "object.spec.containers.all(c, object.spec.containers.exists(d, d.image == c.image))",
            &small,
        );
        assert!(nested < 1_000, "{nested}");
        // An unknown range is the largest collection in the input.
        let wide = cost(
            "object.spec.tolerations.all(t, object.spec.tolerations.all(u, t == u))",
            &small,
        );
        assert!(wide > 5000 * 5000, "{wide}");
        assert!(wide > BUDGET);
        // filter and map copy their list at each step.
        let filtered = cost("object.spec.tolerations.filter(t, t == null)", &small);
        assert!(filtered >= 5000 * 5000, "{filtered}");
    }

    #[test]
    fn message_literals_are_refused() {
        let p = cel::Program::compile("google.protobuf.Int64Value{value: 1} == 1").unwrap();
        assert!(check(p.expression()).unwrap_err().contains("not supported"));
        let p = cel::Program::compile("[1, 2].all(x, x > 0)").unwrap();
        assert_eq!(check(p.expression()), Ok(()));
    }
}
