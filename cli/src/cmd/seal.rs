//! `sealgate seal`: Secrets in, SealedSecrets out.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use sealgate_core::SecretBytes;
use sealgate_core::envelope::{Binding, Format, Scope};
use sealgate_core::objects::check_item_key;
use sealgate_core::sealing::{self, ApiGroup, SealOptions, SealedSecret, Secret, Target};

use crate::args::{FormatArg, OutputFormat, SealArgs};
use crate::{input, key_source, output};

pub fn run(store_dir: Option<&Path>, args: &SealArgs) -> Result<ExitCode> {
    if let Some(instead) = args.kubeseal.instead() {
        bail!("{instead}");
    }
    let api = if args.bitnami {
        ApiGroup::Bitnami
    } else {
        ApiGroup::Sealgate
    };
    let (output, explicit) = formats(args)?;
    let default = if args.bitnami {
        Format::Kubeseal
    } else {
        Format::Age
    };
    let target = key_source::public_target(store_dir, &args.keys)?;
    if let Some(file) = &args.merge_into {
        let input = input::read_input(args.file.as_deref(), "a Secret")?;
        return merge(file, &input, &target, explicit, default);
    }
    let format = explicit.unwrap_or(default);
    check_age_target(format, &target)?;
    if args.raw {
        return raw(args, &target, format);
    }
    let input = input::read_input(args.file.as_deref(), "a Secret")?;
    // A List (`kubectl get secrets -o yaml`) is its items: each Secret is sealed.
    let docs = input::objects(&input, input::parse_docs(&input)?);
    if docs.is_empty() {
        bail!(
            "no Secrets found in {}: expected v1 Secrets as YAML or JSON (UTF-8)",
            input.name
        );
    }
    let opts = SealOptions {
        format,
        scope: args.scope.map(Scope::from),
        api,
        allow_empty_data: args.allow_empty_data,
        namespace: args.namespace.clone(),
        name: args.name.clone(),
    };
    let mut secrets = Vec::with_capacity(docs.len());
    for doc in &docs {
        let secret = Secret::from_value(&doc.value)
            .map_err(|e| anyhow!("{}: {e}", input::at(&input, doc)))?;
        secrets.push((doc, secret));
    }
    let mut out = Vec::with_capacity(secrets.len());
    for (doc, secret) in &secrets {
        let ss = sealing::seal_secret(secret, &target, &opts)
            .map_err(|e| anyhow!("{}: {e}", input::at(&input, doc)))?;
        out.push(ss.to_value());
    }
    let fmt = output::output_format(output, args.output_file.as_deref());
    output::emit(
        &output::serialize_objects(&out, fmt),
        args.output_file.as_deref(),
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `--output`/`--format yaml|json`, and the value format given (`--value-format`, or `--format
/// age|kubeseal` as before it existed).
fn formats(args: &SealArgs) -> Result<(Option<OutputFormat>, Option<Format>)> {
    let (output, legacy) = match args.format {
        None => (None, None),
        Some(FormatArg::Yaml) => (Some(OutputFormat::Yaml), None),
        Some(FormatArg::Json) => (Some(OutputFormat::Json), None),
        Some(FormatArg::Age) => (None, Some(Format::Age)),
        Some(FormatArg::Kubeseal) => (None, Some(Format::Kubeseal)),
    };
    if let Some(f) = legacy {
        eprintln!(
            "note: --format {f} selects the value format, which is --value-format {f} now; --format takes kubeseal's output formats, yaml or json"
        );
    }
    if let (Some(o), Some(f)) = (args.output, output)
        && o != f
    {
        bail!("-o {o:?} and --format {f:?} ask for different output formats: give one");
    }
    let explicit = args.value_format.map(Format::from);
    if let (Some(v), Some(l)) = (explicit, legacy)
        && v != l
    {
        bail!("--value-format {v} and --format {l} ask for different value formats: give one");
    }
    Ok((args.output.or(output), explicit.or(legacy)))
}

/// age needs an age recipient: keys imported from Bitnami have none.
fn check_age_target(format: Format, target: &Target) -> Result<()> {
    if format == Format::Age && target.age.is_empty() {
        let key = target
            .rsa
            .as_ref()
            .map(|k| format!("key {}", k.id().short()))
            .unwrap_or_else(|| "the key".into());
        bail!(
            "{key} has no age identity (keys imported from Bitnami Sealed Secrets are RSA only), so there is no age recipient to seal to. Seal with `--value-format kubeseal` (Bitnami's format), or add a key that has one: `sealgate keys rotate` in a local key store, or the controller's next renewal in a cluster (docs/migrating-from-bitnami.md, \"Keys\")"
        );
    }
    Ok(())
}

/// `--merge-into FILE`: seal one Secret's items into the SealedSecret in FILE, in the value
/// format FILE's values already have unless one is given.
fn merge(
    file: &Path,
    input: &input::Input,
    target: &Target,
    explicit: Option<Format>,
    default: Format,
) -> Result<ExitCode> {
    let docs = input::objects(input, input::parse_docs(input)?);
    let [doc] = &docs[..] else {
        bail!(
            "--merge-into takes exactly one Secret, but {} has {}",
            input.name,
            docs.len()
        );
    };
    let secret =
        Secret::from_value(&doc.value).map_err(|e| anyhow!("{}: {e}", input::at(input, doc)))?;
    let existing = input::read_file(file)?;
    let docs = input::parse_docs(&existing)?;
    let [sdoc] = &docs[..] else {
        bail!(
            "{}: --merge-into needs a file with exactly one SealedSecret, found {} documents",
            existing.name,
            docs.len()
        );
    };
    let mut ss = SealedSecret::from_value(&sdoc.value)
        .map_err(|e| anyhow!("{}: {e}", input::at(&existing, sdoc)))?;
    let format = explicit.or_else(|| sealing::values_format(&ss)).unwrap_or(
        if ss.api == ApiGroup::Bitnami {
            Format::Kubeseal
        } else {
            default
        },
    );
    check_age_target(format, target)?;
    sealing::merge_into(&mut ss, &secret, target, format).map_err(|e| {
        anyhow!(
            "{}: merging into {}: {e}",
            input::at(input, doc),
            ss.describe()
        )
    })?;
    let out = output::rewrite(&existing, &docs, &[(sdoc.index, ss.to_value())])?;
    output::emit(&out, Some(file), None)?;
    eprintln!(
        "merged {} item(s) into {} ({})",
        secret.data.len(),
        file.display(),
        ss.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--raw`: one value in, one base64 value out (no newline, as kubeseal prints it).
fn raw(args: &SealArgs, target: &Target, format: Format) -> Result<ExitCode> {
    let scope = args.scope.map(Scope::from).unwrap_or_default();
    let namespace = args.namespace.as_deref().unwrap_or("");
    let name = args.name.as_deref().unwrap_or("");
    if namespace.is_empty() && scope != Scope::ClusterWide {
        bail!("must provide the --namespace flag with --raw and --scope {scope}");
    }
    if name.is_empty() && scope == Scope::Strict {
        bail!("must provide the --name flag with --raw and --scope strict");
    }
    let (file_key, path) = match args.from_file.as_deref() {
        Some(spec) => match spec.split_once('=') {
            Some((k, p)) => (Some(k.to_string()), Some(p.to_string())),
            None => (None, Some(spec.to_string())),
        },
        None => (None, None),
    };
    let item = args.item.clone().or(file_key);
    if let Some(i) = &item {
        check_item_key(i).map_err(|e| anyhow!("item {i:?}: {e}"))?;
    }
    if item.is_none() && format == Format::Age && scope == Scope::Strict {
        bail!(
            "the age format binds the item name in strict scope: pass --item KEY or --from-file KEY=PATH"
        );
    }
    let input = input::read_input(path.as_deref().map(Path::new), "the value to seal")?;
    let value = SecretBytes::from(&input.bytes[..]);
    let binding = Binding {
        scope,
        namespace,
        name,
        item: item.as_deref().unwrap_or(""),
    };
    let sealed = target
        .seal_value(format, &binding, value.expose())
        .context("cannot seal the value")?;
    output::emit(&sealed, None, None)?;
    Ok(ExitCode::SUCCESS)
}
