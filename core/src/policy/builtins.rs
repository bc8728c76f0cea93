//! Extensions registered on every engine: builtins whose regorus behaviour differs from OPA's,
//! deprecated builtins older templates still call, and sealgate's own helpers.

use std::fmt::Write as _;

use regorus::{Engine, Value};

type Extension = fn(Vec<Value>) -> anyhow::Result<Value>;

/// The extensions: (name, arity, implementation). Plain functions, so engines stay
/// `Send + Sync + Clone`, and the register VM calls the same code through host-await.
pub const EXTENSIONS: &[(&str, u8, Extension)] = &[
    // Shadows regorus's sprintf: with too few arguments OPA prints %!v(MISSING); regorus makes the
    // expression undefined and the violation silently disappears.
    ("sprintf", 2, |a| Ok(Value::from(sprintf(&a[0], &a[1])?))),
    ("re_match", 2, |a| {
        let re = regex::Regex::new(a[0].as_string()?)?;
        Ok(Value::from(re.is_match(a[1].as_string()?)))
    }),
    ("sealgate.entropy", 1, |a| {
        Ok(Value::from(shannon_entropy(a[0].as_string()?)))
    }),
    ("sealgate.secret_reasons", 4, |a| {
        let params: serde_json::Value = serde_json::to_value(&a[3]).unwrap_or_default();
        let reasons = secret_reasons(
            a[0].as_string()?,
            a[1].as_string()?,
            a[2].as_string()?,
            &params,
        );
        Ok(Value::from(
            reasons.into_iter().map(Value::from).collect::<Vec<_>>(),
        ))
    }),
];

/// OPA's deprecated built-ins, which OPA still evaluates in Rego v0 mode (and Gatekeeper with
/// it): older templates installed in clusters call them. Registered only on v0 engines, so a v1
/// module calling one fails to compile, as in OPA 1.x. Semantics as OPA's `v0` implementation:
/// a wrong operand type is an error (undefined without strict errors).
pub const DEPRECATED: &[(&str, u8, Extension)] = &[
    // true if any element of an array or set is `true` (not merely truthy).
    ("any", 1, |a| {
        Ok(Value::from(elements(&a[0])?.iter().any(is_true)))
    }),
    // true if every element of an array or set is `true`; an empty one is.
    ("all", 1, |a| {
        Ok(Value::from(elements(&a[0])?.iter().all(is_true)))
    }),
    ("set_diff", 2, |a| {
        let (x, y) = (a[0].as_set()?, a[1].as_set()?);
        Ok(x.difference(y).into_value())
    }),
    // Whether the CIDR contains the IP address (an address only: OPA's parses the second
    // operand with net.ParseIP).
    ("net.cidr_overlap", 2, |a| {
        let net: ipnet::IpNet = a[0].as_string()?.parse()?;
        let ip: std::net::IpAddr = a[1].as_string()?.parse()?;
        Ok(Value::from(net.contains(&ip)))
    }),
    // An array as is; a set as an array in the set's order.
    ("cast_array", 1, |a| Ok(Value::from(elements(&a[0])?))),
    ("cast_set", 1, |a| {
        Ok(Value::from(
            elements(&a[0])?
                .into_iter()
                .collect::<std::collections::BTreeSet<Value>>(),
        ))
    }),
    ("cast_string", 1, |a| {
        a[0].as_string()?;
        Ok(a[0].clone())
    }),
    ("cast_boolean", 1, |a| {
        a[0].as_bool()?;
        Ok(a[0].clone())
    }),
    ("cast_null", 1, |a| {
        anyhow::ensure!(a[0] == Value::Null, "operand 1 must be null");
        Ok(Value::Null)
    }),
    ("cast_object", 1, |a| {
        a[0].as_object()?;
        Ok(a[0].clone())
    }),
];

/// The elements of an array or a set; another type is an operand type error.
fn elements(v: &Value) -> anyhow::Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a.iter().cloned().collect()),
        Value::Set(s) => Ok(s.iter_sorted().cloned().collect()),
        _ => anyhow::bail!("operand 1 must be one of {{array, set}}"),
    }
}

fn is_true(v: &Value) -> bool {
    *v == Value::Bool(true)
}

/// An extension regorus refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot register {name}: {reason}")]
pub struct RegisterError {
    /// The extension.
    pub name: &'static str,
    /// regorus's reason.
    pub reason: String,
}

/// Register the extensions on an interpreter engine, and the deprecated built-ins when it reads
/// Rego v0.
pub fn register(engine: &mut Engine, v0: bool) -> Result<(), RegisterError> {
    for (name, n, f) in extensions(v0) {
        engine
            .add_extension(
                name.to_string(),
                *n,
                Box::new(move |args| Ok(answer(*f, args))),
            )
            .map_err(|err| RegisterError {
                name,
                reason: err.to_string(),
            })?;
    }
    Ok(())
}

/// The extensions an engine gets: the deprecated built-ins only when it reads Rego v0.
pub fn extensions(v0: bool) -> impl Iterator<Item = &'static (&'static str, u8, Extension)> {
    let deprecated: &[_] = if v0 { DEPRECATED } else { &[] };
    EXTENSIONS.iter().chain(deprecated)
}

/// A failing extension is undefined, as a failing built-in is without strict errors: both engines
/// answer through this.
fn answer(f: Extension, args: Vec<Value>) -> Value {
    f(args).unwrap_or(Value::Undefined)
}

/// Call an extension by name (the register VM's host-await), its arguments in an array; an unknown
/// name or a wrong argument count is undefined too.
pub fn call(name: &str, args: &Value) -> Value {
    let Some((_, n, f)) = EXTENSIONS
        .iter()
        .chain(DEPRECATED)
        .find(|(n, _, _)| *n == name)
    else {
        return Value::Undefined;
    };
    match args.as_array() {
        Ok(a) if a.len() == *n as usize => answer(*f, a.to_vec()),
        _ => Value::Undefined,
    }
}

/// Well-known credential formats: (what it is, pattern).
const TOKEN_PATTERNS: &[(&str, &str)] = &[
    (
        "an AWS access key id",
        r"\b(A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    ),
    (
        "a GitHub token",
        r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    ),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("a Stripe live key", r"\b[sr]k_live_[A-Za-z0-9]{16,}"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("an npm token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    (
        "a JSON Web Token",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "credentials in a URL",
        r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s:@]+@",
    ),
];

/// Why a value looks like a secret (empty: it does not), without ever returning the value.
/// `place` is `data key`, `env var` or `annotation`; `params` may set `minEntropy` (bits per
/// character, default 4.5) and `minLength` (default 24) for the high-entropy check.
pub fn secret_reasons(
    key: &str,
    value: &str,
    place: &str,
    params: &serde_json::Value,
) -> Vec<&'static str> {
    use std::sync::OnceLock;
    static TOKENS: OnceLock<regex::RegexSet> = OnceLock::new();
    static SECRET_NAME: OnceLock<regex::Regex> = OnceLock::new();
    static NAMES_A_SECRET: OnceLock<regex::Regex> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        regex::RegexSet::new(TOKEN_PATTERNS.iter().map(|(_, re)| *re))
            .expect("valid token patterns")
    });
    let secret_name = SECRET_NAME.get_or_init(|| {
        regex::Regex::new(
            r"(?i)(passw(or)?d|passwd|secret|token|api[-_]?key|private[-_]?key|credentials?)",
        )
        .expect("valid regex")
    });
    let mut reasons: Vec<&'static str> = tokens
        .matches(value)
        .iter()
        .map(|i| TOKEN_PATTERNS[i].0)
        .collect();
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY-----") {
        reasons.push("a private key (PEM)");
    }
    let min_len = params
        .get("minLength")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(24) as usize;
    let min_entropy = params
        .get("minEntropy")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(4.5);
    let hex_digest = value.bytes().all(|b| b.is_ascii_hexdigit()); // checksums and digests
    if value.len() >= min_len
        && !value.contains(char::is_whitespace)
        && !hex_digest
        && shannon_entropy(value) >= min_entropy
    {
        reasons.push("a high-entropy string");
    }
    // A key that names a secret instead of holding one (ALLOYDB_SECRET_NAME, TLS_SECRET_REF,
    // DB_PASSWORD_FILE, KEY_PATH): its value is a name or a path, judged by its content only.
    // Found in GoogleCloudPlatform/microservices-demo.
    let names_a_secret = NAMES_A_SECRET.get_or_init(|| {
        regex::Regex::new(r"(?i)(secret[-_.]?(key[-_.]?)?(name|ref)|[-_.](file|path))$")
            .expect("valid regex")
    });
    let reference = value.starts_with('/')
        || value.starts_with('$')
        || value.starts_with("{{")
        || names_a_secret.is_match(key);
    // A secret value is one line; several lines are a file (a config, a script, a policy), whose
    // name says nothing about its content: the content checks above judge it.
    let file = value.trim_end().contains('\n');
    if place != "annotation" && value.len() >= 8 && !reference && !file && secret_name.is_match(key)
    {
        reasons.push("a value under a secret-sounding name");
    }
    reasons.sort_unstable();
    reasons
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// OPA's `sprintf(format, args)`: Go `fmt` verbs applied to Rego values.
pub fn sprintf(format: &Value, args: &Value) -> anyhow::Result<String> {
    let format = format.as_string()?;
    let args: Vec<Value> = match args {
        Value::Array(a) => a.iter().cloned().collect(),
        _ => anyhow::bail!("sprintf: the second operand must be an array"),
    };
    let mut out = String::with_capacity(format.len() + 16 * args.len());
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let Ok(width) = number(&mut chars) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        spec.width = width;
        if chars.peek() == Some(&'.') {
            chars.next();
            let Ok(precision) = number(&mut chars) else {
                out.push_str("%!(NOVERB)");
                break;
            };
            spec.precision = Some(precision.unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let text = format_verb(verb, &spec, arg);
        pad(&mut out, &text, &spec, is_number(arg));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", go_type(a), display(a, false)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    Ok(out)
}

#[derive(Default)]
struct Spec {
    left: bool,
    plus: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// A width or precision, as Go's `parsenum`: past 1,000,000 it is "crazy long", and the rest of
/// the format is dropped (`%!(NOVERB)`), so `%300000000d` cannot ask for 300 MB of padding.
fn number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Option<usize>, ()> {
    const TOO_LARGE: usize = 1_000_000;
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        if n.is_some_and(|n| n > TOO_LARGE) {
            chars.by_ref().for_each(drop);
            return Err(());
        }
        n = Some(n.unwrap_or(0) * 10 + d as usize);
        chars.next();
    }
    Ok(n)
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Number(_))
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Number(n) if n.as_i64().is_some() => "int",
        Value::Number(_) => "float64",
        _ => "string",
    }
}

fn format_verb(verb: char, spec: &Spec, v: &Value) -> String {
    let int = match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    let float = match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    let sign = |s: String, neg: bool| {
        if spec.plus && !neg {
            format!("+{s}")
        } else {
            s
        }
    };
    match (verb, v) {
        ('v', _) | ('s', _) => match (v, spec.precision) {
            (Value::String(s), Some(p)) if verb == 's' => s.chars().take(p).collect(),
            _ => display(v, false),
        },
        ('q', Value::String(s)) => serde_json::to_string(&**s).unwrap_or_default(),
        ('t', Value::Bool(b)) => b.to_string(),
        ('d', _) if int.is_some() => {
            let i = int.unwrap_or(0);
            sign(i.to_string(), i < 0)
        }
        ('x', Value::String(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::String(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('x', _) if int.is_some() => format!("{:x}", int.unwrap_or(0)),
        ('X', _) if int.is_some() => format!("{:X}", int.unwrap_or(0)),
        ('o', _) if int.is_some() => format!("{:o}", int.unwrap_or(0)),
        ('b', _) if int.is_some() => format!("{:b}", int.unwrap_or(0)),
        ('f' | 'F', _) if float.is_some() => {
            let f = float.unwrap_or(0.0);
            sign(format!("{:.*}", spec.precision.unwrap_or(6), f), f < 0.0)
        }
        ('e' | 'E', _) if float.is_some() => {
            let f = float.unwrap_or(0.0);
            let s = go_exp(f, spec.precision.unwrap_or(6));
            sign(if verb == 'E' { s.to_uppercase() } else { s }, f < 0.0)
        }
        ('g' | 'G', _) if float.is_some() => display(v, false),
        _ => format!("%!{verb}({}={})", go_type(v), display(v, false)),
    }
}

/// Go's `%e`: at least two exponent digits (`1.500000e+00`).
fn go_exp(f: f64, precision: usize) -> String {
    let s = format!("{f:.precision$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn pad(out: &mut String, text: &str, spec: &Spec, numeric: bool) {
    let len = text.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(text);
    } else if spec.left {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', width - len));
    } else if spec.zero && numeric {
        let (sign, digits) = match text.strip_prefix(['-', '+']) {
            Some(d) => (&text[..1], d),
            None => ("", text),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', width - len));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', width - len));
        out.push_str(text);
    }
}

/// A value as OPA prints it: strings bare at top level and quoted inside composites, sets as
/// `{a, b}` (or `set()`), objects as `{"k": v}`.
pub fn display(v: &Value, nested: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n
                .as_f64()
                .map(|f| f.to_string())
                .unwrap_or_else(|| v.to_string()),
        },
        Value::String(s) if nested => serde_json::to_string(&**s).unwrap_or_default(),
        Value::String(s) => s.to_string(),
        Value::Array(a) => format!("[{}]", join(a.iter())),
        Value::Set(s) if s.is_empty() => "set()".into(),
        Value::Set(s) => format!("{{{}}}", join(s.iter())),
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", display(k, true), display(v, true)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Undefined => "undefined".into(),
    }
}

fn join<'a>(items: impl Iterator<Item = &'a Value>) -> String {
    items
        .map(|v| display(v, true))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(fmt: &str, args: serde_json::Value) -> String {
        sprintf(&Value::from(fmt), &Value::from(args)).unwrap()
    }

    #[test]
    fn go_fmt_verbs() {
        use serde_json::json;
        assert_eq!(sp("%v and %s", json!(["a", "b"])), "a and b");
        assert_eq!(
            sp("%d|%5d|%-4d|%05d|%+d", json!([3, 42, 7, -12, 5])),
            "3|   42|7   |-0012|+5"
        );
        assert_eq!(
            sp("%q %x %X %o %b %t %%", json!(["hi", 255, 255, 8, 5, true])),
            "\"hi\" ff FF 10 101 true %"
        );
        assert_eq!(
            sp("%.2f %f %e", json!([1.005, 2.5, 1500.0])),
            "1.00 2.500000 1.500000e+03"
        );
        assert_eq!(
            sp("%v", json!([{"a": [1, "b"], "c": null}])),
            "{\"a\": [1, \"b\"], \"c\": null}"
        );
        assert_eq!(sp("%.3s", json!(["abcdef"])), "abc");
    }

    #[test]
    fn missing_and_extra_arguments_follow_go() {
        use serde_json::json;
        // The horizontalpodautoscaler template: 6 verbs, 5 arguments.
        assert_eq!(sp("%v %v %v", json!([1, 2])), "1 2 %!v(MISSING)");
        assert_eq!(sp("%v", json!([1, "x"])), "1%!(EXTRA string=x)");
        assert_eq!(sp("%d", json!(["x"])), "%!d(string=x)");
    }

    /// Go's parsenum gives up on a width or precision past 1e6 and drops the rest of the
    /// format: `%300000000d` once asked for 1.5 GB of padding.
    #[test]
    fn huge_widths_and_precisions_are_refused_as_go_does() {
        use serde_json::json;
        assert_eq!(
            sp("a %300000000d b %v", json!([1, 2])),
            "a %!(NOVERB)%!(EXTRA int=1, int=2)"
        );
        assert_eq!(
            sp("%.300000000f", json!([1.5])),
            "%!(NOVERB)%!(EXTRA float64=1.5)"
        );
        assert_eq!(sp("%12d|", json!([7])), format!("{:>12}|", 7));
    }

    #[test]
    fn sets_print_like_opa() {
        let mut set = std::collections::BTreeSet::new();
        set.insert(Value::from(2));
        set.insert(Value::from(1));
        assert_eq!(display(&Value::from(set), false), "{1, 2}");
        assert_eq!(
            display(&Value::from(std::collections::BTreeSet::new()), false),
            "set()"
        );
    }

    #[test]
    fn secret_reasons_name_the_kind_never_the_value() {
        let p = serde_json::json!({});
        assert_eq!(
            secret_reasons("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "data key", &p),
            vec!["an AWS access key id"]
        );
        assert_eq!(
            secret_reasons("url", "postgres://u:hunter2@db/x", "data key", &p),
            vec!["credentials in a URL"]
        );
        assert_eq!(
            secret_reasons("DB_PASSWORD", "Tr0ub4dor&3", "env var", &p),
            vec!["a value under a secret-sounding name"]
        );
        assert!(secret_reasons("DB_PASSWORD", "/run/secrets/db", "env var", &p).is_empty());
        // A key that names a secret holds a name or a path: not a finding by its name alone
        // (GoogleCloudPlatform/microservices-demo), but still one by its content.
        for (key, value) in [
            ("ALLOYDB_SECRET_NAME", "ALLOYDB_SECRET_NAME_VAL"),
            ("tls-secret-ref", "shop-tls-certificate"),
            ("SIGNING_SECRET_KEY_NAME", "signing-key-v2"),
            ("DB_PASSWORD_FILE", "db-password.txt"),
            ("API_TOKEN_PATH", "tokens/api-token"),
        ] {
            assert!(
                secret_reasons(key, value, "env var", &p).is_empty(),
                "{key}"
            );
        }
        assert!(
            secret_reasons(
                "GITHUB_SECRET_NAME",
                "ghp_0123456789abcdefghijABCDEFGHIJ0123456789",
                "env var",
                &p
            )
            .contains(&"a GitHub token")
        );
        assert_eq!(
            secret_reasons("SECRET_NAMESPACE_PASSWORD", "Tr0ub4dor&3", "env var", &p),
            vec!["a value under a secret-sounding name"],
            "only a name that ends naming a secret"
        );
        // A file under a secret-sounding key name is judged by its content only.
        assert!(
            secret_reasons(
                "no-plaintext-secrets.template.yaml",
                "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\n",
                "data key",
                &p
            )
            .is_empty()
        );
        assert_eq!(
            secret_reasons(
                "secrets.yaml",
                "db:\n  url: postgres://u:hunter2@db/x\n",
                "data key",
                &p
            ),
            vec!["credentials in a URL"]
        );
        assert!(
            secret_reasons(
                "checksum/secret",
                "3f4c2b1a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b",
                "annotation",
                &p
            )
            .is_empty()
        );
        assert_eq!(
            secret_reasons(
                "k",
                "q8Zr2vLx9PfT1mWc7KbN4sHd6YjE3uGa5RtQ0wVo",
                "data key",
                &p
            ),
            vec!["a high-entropy string"]
        );
        let strict = serde_json::json!({"minEntropy": 6.0});
        assert!(
            secret_reasons(
                "k",
                "q8Zr2vLx9PfT1mWc7KbN4sHd6YjE3uGa5RtQ0wVo",
                "data key",
                &strict
            )
            .is_empty()
        );
        assert!(secret_reasons("LOG_LEVEL", "info", "data key", &p).is_empty());
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.0);
    }
}
