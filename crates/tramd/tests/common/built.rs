//! Messages marshalled by `tram-wire`'s [`MessageBuilder`], for tests that check its output
//! against a real bus (dbus-daemon validates every message it receives).

use tram_wire::{BodyWriter, Endian, MessageBuilder};

use super::value::Value;

/// Writes `v` with `w`, mapping the tests' [`Value`] onto [`BodyWriter`]'s calls.
pub fn write_value(w: &mut BodyWriter, v: &Value) {
    match v {
        Value::Byte(b) => w.u8(*b),
        Value::Bool(b) => w.bool(*b),
        Value::I16(n) => w.i16(*n),
        Value::U16(n) => w.u16(*n),
        Value::I32(n) => w.i32(*n),
        Value::U32(n) => w.u32(*n),
        Value::I64(n) => w.i64(*n),
        Value::U64(n) => w.u64(*n),
        Value::F64(n) => w.f64(*n),
        Value::Str(s) => w.string(s),
        Value::Path(s) => w.object_path(s),
        Value::Sig(s) => w.signature(s),
        Value::Fd(i) => w.unix_fd(*i),
        Value::Bytes(b) => w.byte_array(b),
        Value::Array(elem, items) => {
            w.array(elem, |w| items.iter().for_each(|i| write_value(w, i)))
        }
        Value::Struct(members) => w.structure(|w| members.iter().for_each(|m| write_value(w, m))),
        Value::Entry(k, v) => w.dict_entry(|w| {
            write_value(w, k);
            write_value(w, v);
        }),
        Value::Variant(inner) => w.variant(&inner.signature(), |w| write_value(w, inner)),
    }
}

/// Sets `builder`'s byte order and body to `args`.
pub fn with_args(builder: MessageBuilder, big_endian: bool, args: &[Value]) -> MessageBuilder {
    let builder = builder.endian(if big_endian {
        Endian::Big
    } else {
        Endian::Little
    });
    if args.is_empty() {
        return builder;
    }
    let signature: String = args.iter().map(Value::signature).collect();
    builder.body(&signature, |w| args.iter().for_each(|a| write_value(w, a)))
}
