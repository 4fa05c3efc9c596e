//! Template records (RFC 7011 §3.4.1, RFC 3954 §5.2), options template
//! records (RFC 7011 §3.4.2.2, RFC 3954 §6.1), and the split of a data
//! record into its fields (RFC 7011 §3.4.3, §7 for variable lengths).

use super::{Field, FlowError, Template, VARIABLE_LENGTH, Values, Version, be16, be32};

/// The fields of the record of `template` at `p` of `body`, and where the
/// next record starts.
pub(super) fn split_record<'a>(
    template: &Template,
    body: &'a [u8],
    p: usize,
) -> Result<(Values<'a>, usize), FlowError> {
    let mut values: Vec<(Field, &[u8])> = Vec::with_capacity(template.fields.len());
    let mut q = p;
    for f in &template.fields {
        let len = if f.len == VARIABLE_LENGTH {
            // RFC 7011 §7: 1 byte, or 255 then 2 bytes.
            match body.get(q) {
                Some(255) => {
                    let l = be16(body, q + 1).ok_or(FlowError::BadVariableLength)?;
                    q += 3;
                    usize::from(l)
                }
                Some(&l) => {
                    q += 1;
                    usize::from(l)
                }
                None => return Err(FlowError::BadVariableLength),
            }
        } else {
            usize::from(f.len)
        };
        let v = body.get(q..q + len).ok_or(FlowError::BadVariableLength)?;
        values.push((*f, v));
        q += len;
    }
    Ok((values, q))
}

/// A data template at `p`: id, template, offset after it.
pub(super) fn data_template(
    b: &[u8],
    p: usize,
    version: Version,
) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadTemplate)?;
    let count = usize::from(be16(b, p + 2).ok_or(FlowError::BadTemplate)?);
    let (fields, next) = fields(b, p + 4, count, version == Version::Ipfix)?;
    if fields.is_empty() && version == Version::V9 {
        return Err(FlowError::BadTemplate);
    }
    Ok((
        id,
        Template {
            fields,
            options: false,
            scope_fields: 0,
        },
        next,
    ))
}

/// `count` field specifiers from `p`; IPFIX ones may carry a PEN. A field
/// of length 0 is refused, except in a v9 options scope (`zero_ok`), where
/// it takes no bytes and is dropped.
fn fields(b: &[u8], p: usize, count: usize, ipfix: bool) -> Result<(Vec<Field>, usize), FlowError> {
    fields_with(b, p, count, ipfix, false)
}

fn fields_with(
    b: &[u8],
    mut p: usize,
    count: usize,
    ipfix: bool,
    zero_ok: bool,
) -> Result<(Vec<Field>, usize), FlowError> {
    let mut fields = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let raw = be16(b, p).ok_or(FlowError::BadTemplate)?;
        let len = be16(b, p + 2).ok_or(FlowError::BadTemplate)?;
        p += 4;
        let (ie, enterprise) = if ipfix && raw & 0x8000 != 0 {
            let pen = be32(b, p).ok_or(FlowError::BadTemplate)?;
            p += 4;
            (raw & 0x7fff, pen)
        } else {
            (raw, 0)
        };
        if len == 0 {
            if zero_ok {
                continue;
            }
            return Err(FlowError::BadTemplate);
        }
        fields.push(Field {
            ie,
            enterprise,
            len,
        });
    }
    Ok((fields, p))
}

/// NetFlow v9 options template (RFC 3954 §6.1): id, scope length and
/// option length in bytes, then (type, length) pairs.
pub(super) fn v9_options_template(b: &[u8], p: usize) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadOptionsTemplate)?;
    let scope_len = usize::from(be16(b, p + 2).ok_or(FlowError::BadOptionsTemplate)?);
    let option_len = usize::from(be16(b, p + 4).ok_or(FlowError::BadOptionsTemplate)?);
    if scope_len % 4 != 0 || option_len % 4 != 0 {
        return Err(FlowError::BadOptionsTemplate);
    }
    let (scope, q) = fields_with(b, p + 6, scope_len / 4, false, true)
        .map_err(|_| FlowError::BadOptionsTemplate)?;
    let (opts, next) =
        fields(b, q, option_len / 4, false).map_err(|_| FlowError::BadOptionsTemplate)?;
    // Juniper sends a System scope of length 0 (telemetry.md §2.6); a field
    // of length 0 takes no bytes in the records, so it is simply absent.
    let scope_fields = scope.len();
    let mut all = scope;
    all.extend(opts);
    if all.is_empty() {
        return Err(FlowError::BadOptionsTemplate);
    }
    Ok((
        id,
        Template {
            fields: all,
            options: true,
            scope_fields,
        },
        next,
    ))
}

/// IPFIX options template (RFC 7011 §3.4.2.2): id, field count, scope
/// field count (at least 1), then the specifiers, scope first.
pub(super) fn ipfix_options_template(
    b: &[u8],
    p: usize,
) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadOptionsTemplate)?;
    let count = usize::from(be16(b, p + 2).ok_or(FlowError::BadOptionsTemplate)?);
    if count == 0 {
        // Withdrawal of an options template.
        let withdrawn = Template {
            fields: vec![],
            options: true,
            scope_fields: 0,
        };
        return Ok((id, withdrawn, p + 4));
    }
    let scope = usize::from(be16(b, p + 4).ok_or(FlowError::BadOptionsTemplate)?);
    if scope == 0 || scope > count {
        return Err(FlowError::BadOptionsTemplate);
    }
    let (fields, next) =
        fields(b, p + 6, count, true).map_err(|_| FlowError::BadOptionsTemplate)?;
    Ok((
        id,
        Template {
            fields,
            options: true,
            scope_fields: scope,
        },
        next,
    ))
}
