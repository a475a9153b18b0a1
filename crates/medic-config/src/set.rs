//! `--set NAME=VALUE` and `--set NAME.PLATFORM=VALUE`.

use medic_model::{Params, Platform, Scalar, Value};

use crate::playbook::typed;

/// Parses one `--set` argument against the playbook's parameters. The value is read as
/// text and given the parameter's type (`true`/`false` and integers are recognised).
pub(crate) fn parse_set(arg: &str, params: &Params) -> Result<(String, Value), (String, String)> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err((
            format!("`--set {arg}` has no `=`"),
            "write `--set NAME=VALUE`".to_owned(),
        ));
    };
    let key = key.trim();
    let (base, plat) = match key.split_once('.') {
        Some((b, p)) => (b, Some(p)),
        None => (key, None),
    };
    let known = || {
        params
            .specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(spec) = params.spec(base) else {
        return Err((
            format!("unknown parameter `{key}` in `--set {arg}`"),
            format!("this playbook takes: {}", known()),
        ));
    };
    match (spec.per_platform, plat) {
        (true, None) => {
            return Err((
                format!("parameter `{base}` has one value per platform"),
                format!("write `--set {base}.linux=VALUE` or `--set {base}.windows=VALUE`"),
            ));
        }
        (true, Some(p)) if Platform::parse(p).is_none() => {
            return Err((
                format!("unknown platform `{p}` in `--set {arg}`"),
                "use linux or windows".to_owned(),
            ));
        }
        (false, Some(_)) => {
            return Err((
                format!("parameter `{base}` is not per platform"),
                format!("write `--set {base}=VALUE`"),
            ));
        }
        _ => {}
    }
    if raw.trim().is_empty() {
        return Err((
            format!("`--set {arg}`: the value is empty"),
            format!(
                "give `{key}` a value ({}), or leave the `--set` out to keep the playbook's default",
                spec.ty.describe()
            ),
        ));
    }
    let scalar = match raw {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        _ => match raw.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Str(raw.to_owned()),
        },
    };
    // A string parameter takes `true` or `42` as text.
    let scalar = match (&spec.ty, scalar) {
        (medic_model::ParamType::Scalar(medic_model::FactType::Str), s) => Scalar::Str(s.text()),
        (_, s) => s,
    };
    typed(&spec.ty, &scalar)
        .map(|v| (key.to_owned(), v))
        .map_err(|e| {
            (
                format!("`--set {arg}`: {e}"),
                format!("`{base}` takes {}", spec.ty.describe()),
            )
        })
}
