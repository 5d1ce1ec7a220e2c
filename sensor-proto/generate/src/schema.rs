//! sensor.proto as protoc parsed it (a descriptor set with comments), reduced to what the
//! JSON writer and the samples need: the messages, their fields in declaration order, and
//! each field's `json:` and `kinds:` annotations (docs/ARCHITECTURE.md#event-model).
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label as PbLabel, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

pub type Error = Box<dyn std::error::Error>;

pub struct Schema {
    pub messages: Vec<Msg>,
    pub enums: Vec<EnumDef>,
}

pub struct EnumDef {
    pub name: String,
    /// Rust variant names (prost's: the value without the enum's prefix, in camel case).
    pub variants: Vec<String>,
}

pub struct Msg {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Clone, PartialEq)]
pub enum Ty {
    Bool,
    String,
    Bytes,
    Float(&'static str),
    Int(&'static str),
    Enum(String),
    Message(String),
}

#[derive(Clone, PartialEq)]
pub enum Label {
    Single,
    Optional,
    Repeated,
    Map(Ty, Ty),
}

/// What an absent optional becomes in JSON.
#[derive(Clone, Copy, PartialEq)]
pub enum Absent {
    Omit,
    Null,
    EmptyText,
}

#[derive(Clone)]
pub struct Json {
    pub key: Option<String>,
    pub absent: Absent,
    pub omit_zero: bool,
    pub flatten: bool,
}

#[derive(Clone)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub label: Label,
    pub json: Json,
    /// `kinds:` on an `Event` payload: the kinds (JSON names) that carry it.
    pub kinds: Vec<String>,
}

impl Schema {
    pub fn msg(&self, name: &str) -> Result<&Msg, Error> {
        self.messages
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| format!("message {name} not in sensor.proto").into())
    }

    pub fn enum_def(&self, name: &str) -> Result<&EnumDef, Error> {
        self.enums
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| format!("enum {name} not in sensor.proto").into())
    }

    /// `root` and every message reachable from it, root first.
    pub fn reachable(&self, root: &str) -> Result<Vec<&Msg>, Error> {
        let mut out: Vec<&Msg> = vec![self.msg(root)?];
        let mut i = 0;
        while i < out.len() {
            for f in &out[i].fields {
                let nested = match (&f.ty, &f.label) {
                    (_, Label::Map(_, Ty::Message(m))) => Some(m),
                    (_, Label::Map(..)) => None,
                    (Ty::Message(m), _) => Some(m),
                    _ => None,
                };
                if let Some(m) = nested {
                    if !out.iter().any(|x| &x.name == m) {
                        out.push(self.msg(m)?);
                    }
                }
            }
            i += 1;
        }
        Ok(out)
    }
}

impl Field {
    /// The Rust field name prost gives it.
    pub fn rust(&self) -> String {
        const KEYWORDS: &[&str] = &[
            "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
            "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
            "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where",
            "while", "async", "await", "dyn",
        ];
        if KEYWORDS.contains(&self.name.as_str()) {
            format!("r#{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// A `*_unix_ns` int64 is a time: RFC 3339 text under the name without the suffix.
    pub fn is_time(&self) -> bool {
        self.ty == Ty::Int("i64") && self.name.ends_with("_unix_ns")
    }

    pub fn key(&self) -> String {
        if let Some(k) = &self.json.key {
            return k.clone();
        }
        match self.name.strip_suffix("_unix_ns") {
            Some(base) if self.is_time() => base.to_string(),
            _ => self.name.clone(),
        }
    }
}

/// Parses `proto` with protoc (comments kept) into a [`Schema`].
pub fn load(protoc: &Path, proto_dir: &Path, proto: &str) -> Result<Schema, Error> {
    // One file per call: the generator's tests load several schemas at once.
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let out = std::env::temp_dir().join(format!(
        "sensor-proto-fds-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let status = std::process::Command::new(protoc)
        .arg("--include_source_info")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg(format!("-I{}", proto_dir.display()))
        .arg(proto)
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed on {proto}").into());
    }
    let bytes = std::fs::read(&out)?;
    std::fs::remove_file(&out)?;
    let set = FileDescriptorSet::decode(bytes.as_slice())?;
    let file = set.file.first().ok_or("empty descriptor set")?;
    let mut schema = Schema {
        messages: Vec::new(),
        enums: Vec::new(),
    };
    for e in &file.enum_type {
        let name = e.name().to_string();
        let prefix = format!("{}_", upper_snake(&name));
        let variants = e
            .value
            .iter()
            .map(|v| camel(v.name().strip_prefix(&prefix).unwrap_or(v.name())))
            .collect();
        schema.enums.push(EnumDef { name, variants });
    }
    for (mi, m) in file.message_type.iter().enumerate() {
        let mut fields = Vec::new();
        for (fi, f) in m.field.iter().enumerate() {
            let comments = comments(file, &[4, mi as i32, 2, fi as i32]);
            fields.push(field(m, f, &comments)?);
        }
        schema.messages.push(Msg {
            name: m.name().to_string(),
            fields,
        });
    }
    Ok(schema)
}

fn field(
    m: &DescriptorProto,
    f: &prost_types::FieldDescriptorProto,
    comments: &str,
) -> Result<Field, Error> {
    let name = f.name().to_string();
    let where_ = format!("{}.{}", m.name(), name);
    let ty = ty_of(f)?;
    let mut label = match f.label() {
        PbLabel::Repeated => Label::Repeated,
        _ if f.proto3_optional() => Label::Optional,
        _ if matches!(ty, Ty::Message(_)) => Label::Optional,
        _ => Label::Single,
    };
    if let (Label::Repeated, Ty::Message(entry)) = (&label, &ty) {
        if let Some(e) = m.nested_type.iter().find(|n| n.name() == entry.as_str()) {
            if e.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
                label = Label::Map(ty_of(&e.field[0])?, ty_of(&e.field[1])?);
            }
        }
    }
    let mut json = Json {
        key: None,
        absent: Absent::Omit,
        omit_zero: false,
        flatten: false,
    };
    let mut kinds = Vec::new();
    for line in comments.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("json:") {
            for word in rest.split_whitespace() {
                match word {
                    "absent=null" => json.absent = Absent::Null,
                    "absent=\"\"" => json.absent = Absent::EmptyText,
                    "omit_zero" => json.omit_zero = true,
                    "flatten" => json.flatten = true,
                    w if w.starts_with("key=") => json.key = Some(w[4..].to_string()),
                    w => return Err(format!("{where_}: unknown json annotation {w}").into()),
                }
            }
        } else if let Some(rest) = line.strip_prefix("kinds:") {
            kinds.extend(rest.split_whitespace().map(str::to_string));
        }
    }
    if json.absent != Absent::Omit && label != Label::Optional {
        return Err(format!("{where_}: json absent= needs an optional field").into());
    }
    if json.flatten && !matches!((&ty, &label), (Ty::Message(_), Label::Optional)) {
        return Err(format!("{where_}: json flatten needs a message field").into());
    }
    Ok(Field {
        name,
        ty,
        label,
        json,
        kinds,
    })
}

fn ty_of(f: &prost_types::FieldDescriptorProto) -> Result<Ty, Error> {
    let short = || f.type_name().rsplit('.').next().unwrap_or("").to_string();
    Ok(match f.r#type() {
        Type::Bool => Ty::Bool,
        Type::String => Ty::String,
        Type::Bytes => Ty::Bytes,
        Type::Double => Ty::Float("f64"),
        Type::Float => Ty::Float("f32"),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => Ty::Int("i32"),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => Ty::Int("i64"),
        Type::Uint32 | Type::Fixed32 => Ty::Int("u32"),
        Type::Uint64 | Type::Fixed64 => Ty::Int("u64"),
        Type::Enum => Ty::Enum(short()),
        Type::Message => Ty::Message(short()),
        Type::Group => return Err(format!("{}: groups are not supported", f.name()).into()),
    })
}

/// Leading and trailing comments of the element at `path`.
fn comments(file: &FileDescriptorProto, path: &[i32]) -> String {
    let Some(info) = &file.source_code_info else {
        return String::new();
    };
    info.location
        .iter()
        .filter(|l| l.path == path)
        .flat_map(|l| [l.leading_comments(), l.trailing_comments()])
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn upper_snake(camel: &str) -> String {
    let mut s = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

pub fn camel(upper_snake: &str) -> String {
    upper_snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_string() + &c.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

pub fn snake(camel: &str) -> String {
    upper_snake(camel).to_lowercase()
}
