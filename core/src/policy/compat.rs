//! Making regorus run Gatekeeper templates the way OPA does.
//!
//! regorus differs from OPA in a few places that change results (reference §4.5). They are fixed
//! by editing the Rego text, but every edit is found in **regorus's own parse** of the policy
//! (its `unstable` AST, pinned with the crate), not by scanning text, so a construct the parser
//! reads otherwise (an object literal as a rule value, a `{` in a string) is never touched. Every
//! edit keeps every line where it was, so errors and coverage still point at the user's lines.
//!
//! 1. **Chained bodies** (v0) `p[x] { a } { b }` mean two rules; regorus refuses them on set rules
//!    ("else cannot be used with set rules"). Only when the unedited policy fails to parse with
//!    exactly that error, the head is repeated before the refused body, on the same line.
//! 2. **A newline before `(`** ends an expression in OPA; regorus reads `x⏎(y)` as a call `x(y)`.
//!    Only such calls at a statement's top level (inside brackets OPA skips newlines too) get a
//!    `;` after the callee.
//! 3. **`not f(<undefined>)`**: OPA hoists call arguments out of the negation, so an undefined
//!    argument makes the body fail; regorus makes `not` succeed (a false positive). Arguments that
//!    are refs or calls are hoisted into fresh variables before the `not`. (A `_` wildcard under
//!    `not` is not edited: OPA refuses it, "var _ is unsafe", and so does [`unsafe_wildcard`].)
//! 4. **In regorus's register VM, `x := <undefined>` does not fail the body.** `; x == x` follows
//!    each statement `x := e` (a v1 body of one unbraced statement is braced first). It is true
//!    whenever `x` is defined, so results do not change anywhere else.
//!
//! Edits 2–4 never change a policy whose text has none of these constructs; edit 1 never changes
//! a policy regorus parses. If an edited policy would not parse (a bug here), the last text that
//! did is used, never a broken one. Builtin gaps are fixed with extensions (see
//! [`super::builtins`]): OPA's `sprintf` and the deprecated `re_match`.

use regorus::unstable::{
    Expr, Lexer, Literal, LiteralStmt, Module, Parser, Query, Rule, RuleHead, Source, TokenKind,
};

/// How deep `{` and `[` may nest in a policy. regorus's parser backtracks between comprehensions
/// and literals at each level, so its time doubles per level (found by fuzzing: 14 levels took
/// 3 s, 30 would take days). Policies in the wild nest a few levels.
pub const MAX_NESTING: usize = 12;

/// The largest exponent a number literal may have. regorus expands a literal's exponent
/// (`0e20000000` took 2.8 s; larger ones run out of memory: found by fuzzing); a float's range
/// ends at 308.
pub const MAX_EXPONENT: u64 = 1000;

/// Rego text regorus is not given, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Brackets nest deeper than [`MAX_NESTING`].
    #[error(
        "brackets nest {0} levels deep; sealgate reads at most {MAX_NESTING} (the Rego parser's time doubles with each level): flatten the expression into helper rules"
    )]
    Nesting(usize),
    /// More minus signs in a row than [`MAX_NESTING`].
    #[error(
        "{0} minus signs in a row; sealgate reads at most {MAX_NESTING} (each is a level of the Rego parser's recursion)"
    )]
    MinusRun(usize),
    /// A number literal's exponent is over [`MAX_EXPONENT`].
    #[error("a number literal has exponent {0}; sealgate reads at most {MAX_EXPONENT}")]
    Exponent(u64),
}

/// Whether regorus can be given `src` safely: nesting within [`MAX_NESTING`], exponents within
/// [`MAX_EXPONENT`]. The error says what, for a person.
pub fn check_limits(src: &str) -> Result<(), LimitError> {
    let depth = nesting_depth(src);
    if depth > MAX_NESTING {
        return Err(LimitError::Nesting(depth));
    }
    let minus = longest_minus_run(src);
    if minus > MAX_NESTING {
        return Err(LimitError::MinusRun(minus));
    }
    if let Some(e) = largest_exponent(src).filter(|e| *e > MAX_EXPONENT) {
        return Err(LimitError::Exponent(e));
    }
    Ok(())
}

/// The characters of Rego text that are code: each string, raw string or comment is given as a
/// single `"`, so what counts nesting, minus runs and exponents never looks inside one.
fn code(src: &str) -> impl Iterator<Item = char> + '_ {
    let mut chars = src.chars();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        let end = match c {
            '"' => '"',
            '`' => '`',
            '#' => '\n',
            other => return Some(other),
        };
        while let Some(x) = chars.next() {
            if x == end || (c == '"' && x == '\n') {
                break;
            }
            if c == '"' && x == '\\' {
                chars.next();
            }
        }
        Some('"')
    })
}

/// The longest run of `-` (whitespace between allowed) in code: regorus parses each as a unary
/// minus, one recursion level each (a thousand overflowed the stack: found by fuzzing).
fn longest_minus_run(src: &str) -> usize {
    let (mut run, mut max) = (0usize, 0usize);
    for c in code(src) {
        match c {
            '-' => {
                run += 1;
                max = max.max(run);
            }
            c if c.is_whitespace() => {}
            _ => run = 0,
        }
    }
    max
}

/// The largest exponent of a number literal (`1e10`, `2.5E-3`) in code.
fn largest_exponent(src: &str) -> Option<u64> {
    let mut chars = code(src).peekable();
    let (mut max, mut prev) = (None, ' ');
    while let Some(c) = chars.next() {
        let starts_number = c.is_ascii_digit() && !(prev.is_ascii_alphanumeric() || prev == '_');
        prev = c;
        if !starts_number {
            continue;
        }
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit() || **d == '.') {
            prev = d;
            chars.next();
        }
        if chars.next_if(|e| matches!(e, 'e' | 'E')).is_none() {
            continue;
        }
        chars.next_if(|s| matches!(s, '+' | '-'));
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        prev = digits.chars().last().unwrap_or('e');
        if !digits.is_empty() {
            // Saturating: 30 digits of exponent are as refused as 4.
            max = max.max(Some(digits.parse::<u64>().unwrap_or(u64::MAX)));
        }
    }
    max
}

/// The deepest nesting of `{`, `[` and `(` in code (parentheses recurse too, if more cheaply).
pub fn nesting_depth(src: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in code(src) {
        match c {
            '{' | '[' | '(' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Apply every edit. `v0` is the policy's Rego version (Gatekeeper templates are v0).
pub fn normalize(src: &str, v0: bool) -> String {
    if check_limits(src).is_err() {
        // Never handed to the parser: compiling refuses it with a message.
        return src.to_string();
    }
    let text = if v0 {
        split_chained_set_bodies(src, v0)
    } else {
        src.to_string()
    };
    let Ok(module) = parse(&text, v0) else {
        // Not Rego regorus can read: the engine reports the error on the user's own text.
        return src.to_string();
    };
    let edited = apply(&text, newline_calls(&Text::new(&text), &module));
    let (base, module) = match parse(&edited, v0) {
        Ok(m) => (edited, m),
        Err(_) => (text, module),
    };
    let mut edits = Vec::new();
    let t = Text::new(&base);
    each_query(&module, &mut |q| {
        negations(&t, q, &mut edits);
        guards(&t, q, &mut edits);
    });
    let out = apply(&base, edits);
    if parse(&out, v0).is_ok() { out } else { base }
}

/// regorus's parse of `text` (`v0`: Rego v0 unless the module imports `rego.v1`).
fn parse(text: &str, v0: bool) -> anyhow::Result<Module> {
    let source = Source::from_contents("policy.rego".into(), text.to_string())?;
    let mut parser = Parser::new(&source)?;
    if !v0 {
        parser.enable_rego_v1()?;
    }
    parser.parse()
}

/// An edit: replace `start..end` with the text.
type Edit = (usize, usize, String);

/// A policy's text with where its string literals are: regorus's spans of a string leave out
/// its quotes, so a span that starts or ends with one is widened to take them in.
struct Text<'a> {
    src: &'a str,
    /// (content start, content end) of every string and raw string token.
    strings: Vec<(usize, usize)>,
}

impl<'a> Text<'a> {
    fn new(src: &'a str) -> Text<'a> {
        let mut strings = Vec::new();
        if let Ok(source) = Source::from_contents("policy.rego".into(), src.to_string()) {
            let mut lexer = Lexer::new(&source);
            while let Ok(t) = lexer.next_token() {
                match t.0 {
                    TokenKind::Eof => break,
                    TokenKind::String | TokenKind::RawString => {
                        strings.push((t.1.start as usize, t.1.end as usize));
                    }
                    _ => {}
                }
            }
        }
        Text { src, strings }
    }

    /// The byte range of a span, quotes included.
    fn range(&self, start: u32, end: u32) -> (usize, usize) {
        let (mut s, mut e) = (start as usize, end as usize);
        if self.strings.iter().any(|(cs, _)| *cs == s) {
            s -= 1;
        }
        if self.strings.iter().any(|(_, ce)| *ce == e) {
            e += 1;
        }
        (s, e)
    }

    fn expr(&self, e: &Expr) -> (usize, usize) {
        let sp = e.span();
        self.range(sp.start, sp.end)
    }

    fn of(&self, (s, e): (usize, usize)) -> &'a str {
        &self.src[s..e]
    }
}

fn apply(src: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|(s, e, _)| (*s, *e));
    let mut out = String::with_capacity(src.len() + edits.len() * 16);
    let mut pos = 0;
    for (s, e, text) in edits {
        if s < pos {
            continue; // overlapping edits cannot happen; never corrupt the text if one does
        }
        out.push_str(&src[pos..s]);
        out.push_str(&text);
        pos = e;
    }
    out.push_str(&src[pos..]);
    out
}

/// Every query of the module (rule bodies, comprehensions, `every`), outer before inner.
fn each_query<'a>(module: &'a Module, f: &mut dyn FnMut(&'a Query)) {
    for rule in &module.policy {
        match rule.as_ref() {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        queries_in_expr(refr, f);
                        if let Some(a) = assign {
                            queries_in_expr(&a.value, f);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        queries_in_expr(refr, f);
                        if let Some(k) = key {
                            queries_in_expr(k, f);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        queries_in_expr(refr, f);
                        for a in args {
                            queries_in_expr(a, f);
                        }
                        if let Some(a) = assign {
                            queries_in_expr(&a.value, f);
                        }
                    }
                }
                for b in bodies {
                    if let Some(a) = &b.assign {
                        queries_in_expr(&a.value, f);
                    }
                    query_and_nested(&b.query, f);
                }
            }
            Rule::Default { value, .. } => queries_in_expr(value, f),
        }
    }
}

fn query_and_nested<'a>(q: &'a Query, f: &mut dyn FnMut(&'a Query)) {
    f(q);
    for stmt in &q.stmts {
        for e in stmt_exprs(stmt) {
            queries_in_expr(e, f);
        }
        if let Literal::Every { query, .. } = &stmt.literal {
            query_and_nested(query, f);
        }
    }
}

fn queries_in_expr<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Query)) {
    match e {
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            queries_in_expr(term, f);
            query_and_nested(query, f);
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            queries_in_expr(key, f);
            queries_in_expr(value, f);
            query_and_nested(query, f);
        }
        other => {
            for c in children(other) {
                queries_in_expr(c, f);
            }
        }
    }
}

/// The expressions a statement holds directly (not those of a nested query).
fn stmt_exprs(stmt: &LiteralStmt) -> Vec<&Expr> {
    let mut out: Vec<&Expr> = match &stmt.literal {
        Literal::SomeVars { .. } => Vec::new(),
        Literal::SomeIn {
            key,
            value,
            collection,
            ..
        } => membership(key, value, collection),
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => vec![expr.as_ref()],
        Literal::Every { domain, .. } => vec![domain.as_ref()],
    };
    for w in &stmt.with_mods {
        out.push(&w.refr);
        out.push(&w.r#as);
    }
    out
}

/// The direct sub-expressions of an expression (comprehension queries excluded).
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().map(|i| i.as_ref()).collect()
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .flat_map(|(_, k, v)| [k.as_ref(), v.as_ref()])
            .collect(),
        Expr::ArrayCompr { term, .. } | Expr::SetCompr { term, .. } => vec![term.as_ref()],
        Expr::ObjectCompr { key, value, .. } => vec![key.as_ref(), value.as_ref()],
        Expr::Call { fcn, params, .. } => std::iter::once(fcn.as_ref())
            .chain(params.iter().map(|p| p.as_ref()))
            .collect(),
        Expr::UnaryExpr { expr, .. } => vec![expr.as_ref()],
        Expr::RefDot { refr, .. } => vec![refr.as_ref()],
        Expr::RefBrack { refr, index, .. } => vec![refr.as_ref(), index.as_ref()],
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => vec![lhs.as_ref(), rhs.as_ref()],
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => membership(key, value, collection),
        _ => Vec::new(),
    }
}

/// The parts of `key, value in collection` (a `some … in` statement or a membership test).
fn membership<'a>(
    key: &'a Option<regorus::unstable::ExprRef>,
    value: &'a Expr,
    collection: &'a Expr,
) -> Vec<&'a Expr> {
    key.iter()
        .map(|k| k.as_ref())
        .chain([value, collection])
        .collect()
}

/// Every call in `e`, comprehension terms and queries excluded (they are statements of their own
/// or inside brackets).
fn calls<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    if matches!(e, Expr::Call { .. }) {
        out.push(e);
    }
    if !matches!(
        e,
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. }
    ) {
        for c in children(e) {
            calls(c, out);
        }
    }
}

/// Whether `_` (the wildcard) appears in `e` as a variable (not counting comprehensions, whose
/// variables are their own).
fn has_wildcard(e: &Expr) -> bool {
    match e {
        Expr::Var { value, .. } => value.as_string().is_ok_and(|v| v.as_ref() == "_"),
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => false,
        other => children(other).into_iter().any(has_wildcard),
    }
}

/// Where a `_` wildcard appears under `not` (1-based line and column of the `not`), which OPA
/// refuses in v0 and v1 modules alike ("rego_unsafe_var_error: var _ is unsafe"): Gatekeeper
/// would not install such a template, nor conftest load such a module. regorus accepts it (and
/// lets the wildcard escape the negation), so it is refused here.
pub fn unsafe_wildcard(src: &str, v0: bool) -> Option<(u32, u32)> {
    if check_limits(src).is_err() {
        return None;
    }
    let text = if v0 {
        split_chained_set_bodies(src, v0)
    } else {
        src.to_string()
    };
    let module = parse(&text, v0).ok()?;
    let mut found: Option<(u32, u32)> = None;
    each_query(&module, &mut |q| {
        for stmt in &q.stmts {
            if let Literal::NotExpr { span, expr } = &stmt.literal
                && has_wildcard(expr)
            {
                let at = (span.line, span.col);
                found = Some(found.map_or(at, |f| f.min(at)));
            }
        }
    });
    found
}

/// The bracket depth at `pos` of the code in `text` from `from` (strings and comments skipped,
/// by regorus's own lexer). `None` if the text does not lex.
fn depth_at(text: &str, from: usize, pos: usize) -> Option<i32> {
    let source = Source::from_contents("fragment.rego".into(), text[from..pos].to_string()).ok()?;
    let mut lexer = Lexer::new(&source);
    let mut depth = 0;
    loop {
        let tok = lexer.next_token().ok()?;
        match tok.0 {
            TokenKind::Eof => return Some(depth),
            TokenKind::Symbol => match tok.1.text() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth -= 1,
                _ => {}
            },
            _ => {}
        }
    }
}

/// The first byte at or after `pos` that is neither whitespace nor in a `#` comment.
fn skip_blank(text: &str, mut pos: usize) -> usize {
    let b = text.as_bytes();
    while pos < b.len() {
        if b[pos].is_ascii_whitespace() {
            pos += 1;
        } else if b[pos] == b'#' {
            while pos < b.len() && b[pos] != b'\n' {
                pos += 1;
            }
        } else {
            break;
        }
    }
    pos
}

/// Edit 2: calls `f⏎(x)` at a statement's top level → `f;⏎(x)`.
fn newline_calls(t: &Text, module: &Module) -> Vec<Edit> {
    let text = t.src;
    let mut edits = Vec::new();
    each_query(module, &mut |q| {
        for stmt in &q.stmts {
            let mut found = Vec::new();
            for e in stmt_exprs(stmt) {
                calls(e, &mut found);
            }
            for call in found {
                let Expr::Call { fcn, .. } = call else {
                    continue;
                };
                let (_, fcn_end) = t.expr(fcn);
                let open = skip_blank(text, fcn_end);
                let crosses_line = text[fcn_end..open].contains('\n');
                if crosses_line
                    && text.as_bytes().get(open) == Some(&b'(')
                    && depth_at(text, stmt.span.start as usize, fcn_end) == Some(0)
                {
                    edits.push((fcn_end, fcn_end, ";".to_string()));
                }
            }
        }
    });
    edits
}

/// Refs and calls are hoisted; literals, plain variables and anything with a `_` wildcard (which
/// must stay quantified inside the negation) are not.
fn needs_hoisting(e: &Expr) -> bool {
    matches!(
        e,
        Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. }
    ) && !has_wildcard(e)
}

/// Edit 3, for the `not` statements of one query.
fn negations(t: &Text, q: &Query, edits: &mut Vec<Edit>) {
    for stmt in &q.stmts {
        let Literal::NotExpr { span: lit, expr } = &stmt.literal else {
            continue;
        };
        // `with` changes what the expression sees: such statements are left alone.
        if !stmt.with_mods.is_empty() {
            continue;
        }
        let (start, end) = t.range(lit.start, lit.end);
        let mut hoisted = String::new();
        let mut new_expr = t.of(t.expr(expr)).to_string();
        if let Expr::Call { fcn, params, .. } = expr.as_ref()
            && params.iter().any(|p| needs_hoisting(p))
        {
            let mut args = Vec::new();
            for p in params {
                let r = t.expr(p);
                if needs_hoisting(p) {
                    let var = format!("__sg_h{}", r.0);
                    // Guarded as edit 4 guards every assignment.
                    hoisted.push_str(&format!("{var} := {}; {var} == {var}; ", t.of(r)));
                    args.push(var);
                } else {
                    args.push(t.of(r).to_string());
                }
            }
            new_expr = format!("{}({})", t.of(t.expr(fcn)), args.join(", "));
        }
        if !hoisted.is_empty() {
            edits.push((start, end, format!("{hoisted}not {new_expr}")));
        }
    }
}

/// Edit 4, for the assignments of one query.
fn guards(t: &Text, q: &Query, edits: &mut Vec<Edit>) {
    let text = t.src;
    let mut any = false;
    for stmt in &q.stmts {
        let Literal::Expr { expr, .. } = &stmt.literal else {
            continue;
        };
        let Expr::AssignExpr { op, lhs, .. } = expr.as_ref() else {
            continue;
        };
        let Expr::Var { value, .. } = lhs.as_ref() else {
            continue;
        };
        let Ok(name) = value.as_string() else {
            continue;
        };
        if name.as_ref() == "_" || !matches!(op, regorus::unstable::AssignOp::ColEq) {
            continue;
        }
        let (_, end) = t.range(stmt.span.start, stmt.span.end);
        edits.push((end, end, format!("; {name} == {name}")));
        any = true;
    }
    // A v1 body of one unbraced statement (`p if x := e`) is braced so the guard can follow.
    let (qs, qe) = (q.span.start as usize, q.span.end as usize);
    let before = text[..qs].trim_end();
    let after_if = before.ends_with("if")
        && !before[..before.len() - 2].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if any && after_if && text.as_bytes().get(qs) != Some(&b'{') {
        let last = q.stmts.last().expect("a query has a statement");
        let qe = t.range(last.span.start, last.span.end).1.max(qe);
        edits.push((qs, qs, "{ ".to_string()));
        edits.push((qe, qe, " }".to_string()));
    }
}

/// Edit 1 (v0): `head { a } { b }` on a set rule → `head { a } head { b }`, one refused body at
/// a time, while the parse fails with regorus's "else cannot be used with set rules".
fn split_chained_set_bodies(src: &str, v0: bool) -> String {
    let mut text = src.to_string();
    for _ in 0..256 {
        let Err(e) = parse(&text, v0) else {
            return text;
        };
        let msg = e.to_string();
        if !msg.contains("else cannot be used with set rules") {
            return text;
        }
        let Some(body) = error_offset(&text, &msg) else {
            return text;
        };
        match set_head_before(&text, body) {
            Some(head) => text.insert_str(body, &format!("{head} ")),
            None => return text,
        }
    }
    text
}

/// The byte offset of the `--> file:LINE:COL` a regorus error points at.
fn error_offset(text: &str, msg: &str) -> Option<usize> {
    let at = msg.lines().find_map(|l| l.trim().strip_prefix("--> "))?;
    let mut parts = at.rsplitn(3, ':');
    let col: usize = parts.next()?.parse().ok()?;
    let line: usize = parts.next()?.parse().ok()?;
    let line_start = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum::<usize>();
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let offset = line_start
        + line_text
            .char_indices()
            .nth(col.checked_sub(1)?)
            .map(|(i, _)| i)?;
    (text.as_bytes().get(offset) == Some(&b'{')).then_some(offset)
}

/// The head of the set rule whose refused body starts at `body`, as one line of its tokens:
/// back over the previous body `{ … }`, then over the head's ref (`a.b[key]`).
fn set_head_before(text: &str, body: usize) -> Option<String> {
    let source = Source::from_contents("policy.rego".into(), text.to_string()).ok()?;
    let mut lexer = Lexer::new(&source);
    let mut toks: Vec<(TokenKind, usize, usize)> = Vec::new();
    loop {
        let t = lexer.next_token().ok()?;
        if t.0 == TokenKind::Eof {
            break;
        }
        let quoted = matches!(t.0, TokenKind::String | TokenKind::RawString) as usize;
        toks.push((t.0, t.1.start as usize - quoted, t.1.end as usize + quoted));
    }
    let sym =
        |i: usize, s: &str| toks[i].0 == TokenKind::Symbol && &text[toks[i].1..toks[i].2] == s;
    let mut i = toks.iter().position(|t| t.1 == body)?.checked_sub(1)?;
    // Back to the `{` that opens the previous body, and past it.
    i = matching_open(&toks, text, i, "}", "{")?.checked_sub(1)?;
    let head_end = i;
    // The head: a ref, possibly with a `[key]`.
    loop {
        if sym(i, "]") {
            i = matching_open(&toks, text, i, "]", "[")?.checked_sub(1)?;
            continue;
        }
        if toks[i].0 != TokenKind::Ident {
            return None;
        }
        if i > 0 && sym(i - 1, ".") {
            i = i.checked_sub(2)?;
            continue;
        }
        break;
    }
    let mut head = String::new();
    for k in i..=head_end {
        let tok = &text[toks[k].1..toks[k].2];
        if tok.contains('\n') {
            return None;
        }
        if k > i && toks[k].1 > toks[k - 1].2 {
            head.push(' ');
        }
        head.push_str(tok);
    }
    Some(head)
}

/// The index of the token that opens the bracket closed at `close`.
fn matching_open(
    toks: &[(TokenKind, usize, usize)],
    text: &str,
    close: usize,
    closer: &str,
    opener: &str,
) -> Option<usize> {
    let mut depth = 0;
    for k in (0..=close).rev() {
        if toks[k].0 != TokenKind::Symbol {
            continue;
        }
        match &text[toks[k].1..toks[k].2] {
            s if s == closer => depth += 1,
            s if s == opener => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_comment_stays_a_comment() {
        let src = "package t\np { not startswith(lower(x), y) # no repo matches\n}\n";
        assert_eq!(
            normalize(src, true),
            "package t\np { __sg_h29 := lower(x); __sg_h29 == __sg_h29; not startswith(__sg_h29, y) # no repo matches\n}\n"
        );
    }

    #[test]
    fn body_assignments_are_guarded_and_nothing_else() {
        let src = "package t\nimport rego.v1\ndefault allow := false\nf(x) := y if { y := x.a # why\n  z := [c |\n    c := y[_]\n  ]\n  count(z) > 0 }\nmsg := \"a := b\"\np if x := input.a\ng := 1 if true\n";
        assert_eq!(
            normalize(src, false),
            "package t\nimport rego.v1\ndefault allow := false\nf(x) := y if { y := x.a; y == y # why\n  z := [c |\n    c := y[_]; c == c\n  ]; z == z\n  count(z) > 0 }\nmsg := \"a := b\"\np if { x := input.a; x == x }\ng := 1 if true\n"
        );
    }

    #[test]
    fn paren_on_a_new_line_is_a_new_expression() {
        let src = "package t\nviolation[x] {\n  input.a # trailing comment\n  (input.a + 1) > 1\n  x := 1\n}\n";
        let out = normalize(src, true);
        assert!(out.contains("input.a; # trailing comment"), "{out}");
        // Not inside brackets, not after an operator or comma, not in strings, not a same-line call.
        for keep in [
            "package t\np { f(a,\n (b)) }\n",
            "package t\np { x := 1 +\n (2) }\n",
            "package t\np { x := [a\n (b)] }\n",
            "package t\np { x := \"(\"\n y := 1 }\n",
            "package t\np { count(input.a) > 1 }\n",
        ] {
            let out = normalize(keep, true);
            assert!(!out.contains(";\n"), "{keep:?} became {out:?}");
        }
    }

    #[test]
    fn chained_bodies_become_separate_rules() {
        let src = "package t\nviolation[{\"msg\": msg}] {\n  input.a\n  msg := \"a\"\n} {\n  input.b\n  msg := \"b\"\n} {\n  input.c\n  msg := \"c\"\n}\nallow { true }\n";
        let out = normalize(src, true);
        assert_eq!(out.matches("violation[{\"msg\": msg}]").count(), 3, "{out}");
        assert_eq!(out.lines().count(), src.lines().count(), "{out}");
        assert!(parse(&out, true).is_ok());
        // else chains and chained bodies of complete rules parse already: untouched.
        for keep in [
            "package t\nf(x) = 1 { x > 1 } else = 2 { true }\n",
            "package t\np { input.a } { input.b }\n",
        ] {
            assert_eq!(split_chained_set_bodies(keep, true), keep);
        }
    }

    /// The K8sPSPSeccomp shape that the old text rewriter broke: an object literal as the value
    /// of a function rule is not a body.
    #[test]
    fn an_object_literal_rule_value_is_not_a_body() {
        let src = "package t\nget_profile(c) = {\"profile\": p, \"file\": \"\"} {\n  p := c.type\n  not has_x(c)\n}\nhas_x(c) { c.x }\n";
        let out = normalize(src, true);
        assert!(parse(&out, true).is_ok(), "{out}");
        assert!(
            out.starts_with("package t\nget_profile(c) = {\"profile\": p, \"file\": \"\"} {\n  p := c.type; p == p\n"),
            "{out}"
        );
    }

    #[test]
    fn negated_call_arguments_are_hoisted() {
        let src = "package t\nviolation[\"v\"] {\n  not accept(rule, v, params.ranges)\n  not startswith(\"x\", y)\n  not f(input.a) with input as {}\n}\n";
        let out = normalize(src, true);
        assert!(
            out.contains(
                "__sg_h49 := params.ranges; __sg_h49 == __sg_h49; not accept(rule, v, __sg_h49)"
            ),
            "{out}"
        );
        assert!(out.contains("  not startswith(\"x\", y)\n"), "{out}");
        assert!(out.contains("not f(input.a) with input as {}"), "{out}");
    }

    #[test]
    fn a_wildcard_under_not_is_found_as_opa_refuses_it() {
        // gator 3.23: "rego_unsafe_var_error: var _ is unsafe" for each of these, v0 and v1.
        let wild = "package t\np { not startswith(x, input.parameters.prefixes[_]) }\n";
        assert_eq!(unsafe_wildcard(wild, true), Some((2, 5)));
        assert_eq!(normalize(wild, true), wild, "not edited");
        let cmp = "package t\np {\n  y := 1\n  not xs[_] == \"a\"\n}\n";
        assert_eq!(unsafe_wildcard(cmp, true), Some((4, 3)));
        let bare = "package t\nimport rego.v1\np if { not input.blocked[_] }\n";
        assert_eq!(unsafe_wildcard(bare, false), Some((3, 8)));
        // A comprehension's variables are its own; a bound variable is no wildcard.
        let fine = "package t\np { not count([x | x := xs[_]]) > 0; i := 0; not xs[i] }\n";
        assert_eq!(unsafe_wildcard(fine, true), None);
    }

    #[test]
    fn strings_and_comments_are_left_alone() {
        let src = "package t\n# not f(a.b)\np { x := \"not f(a.b) ; y := 1\" }\n";
        assert_eq!(
            normalize(src, true),
            "package t\n# not f(a.b)\np { x := \"not f(a.b) ; y := 1\"; x == x }\n"
        );
    }

    #[test]
    fn unparseable_policies_are_returned_unchanged() {
        let src = "package t\np { x := }\n";
        assert_eq!(normalize(src, true), src);
    }
}
