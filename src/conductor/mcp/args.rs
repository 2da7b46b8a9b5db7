//! A tool argument: its name, where it goes in the synthesized HTTP request (path, query
//! string or JSON body), its JSON type, and the check that it was given as that type.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
    Body,
}

/// The JSON type of an argument. `Raw` is a JSON Schema written out (a unit test parses
/// every one).
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Int,
    Bool,
    Enum(&'static [&'static str]),
    Raw(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub place: Place,
    pub ty: Ty,
    pub description: &'static str,
    pub required: bool,
}

impl Arg {
    pub const fn body(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self {
            name,
            place: Place::Body,
            ty,
            description,
            required: false,
        }
    }

    pub const fn query(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self {
            place: Place::Query,
            ..Self::body(name, ty, description)
        }
    }

    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The argument's JSON Schema.
    pub fn schema(&self) -> Value {
        let mut s = match self.ty {
            Ty::Str => json!({ "type": "string" }),
            Ty::Int => json!({ "type": "integer" }),
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::Enum(values) => json!({ "type": "string", "enum": values }),
            Ty::Raw(text) => serde_json::from_str(text).unwrap_or_else(|_| json!({})),
        };
        s["description"] = Value::String(self.description.to_string());
        s
    }

    /// The value as query-string text, when it has the argument's type. The route
    /// validates the value itself (ranges, known ids); this only refuses a wrong type,
    /// which a query string could not show.
    pub fn query_text(&self, v: &Value) -> Option<String> {
        match (self.ty, v) {
            (Ty::Str | Ty::Enum(_), Value::String(s)) => Some(s.clone()),
            (Ty::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            (Ty::Bool, Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }

    /// "a string", "an integer", ... for an error message.
    pub fn type_name(&self) -> &'static str {
        match self.ty {
            Ty::Str => "a string",
            Ty::Int => "an integer",
            Ty::Bool => "a boolean",
            Ty::Enum(_) => "one of the listed strings",
            Ty::Raw(_) => "the value its schema describes",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_takes_only_the_declared_type() {
        let limit = Arg::query("limit", Ty::Int, "n");
        assert_eq!(limit.query_text(&json!(5)).as_deref(), Some("5"));
        for bad in [json!("5"), json!(1.5), json!(null), json!([5])] {
            assert_eq!(limit.query_text(&bad), None, "{bad}");
        }
        let flag = Arg::query("archived", Ty::Bool, "b");
        assert_eq!(flag.query_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(flag.query_text(&json!("true")), None);
        let status = Arg::query("status", Ty::Enum(&["a"]), "s");
        assert_eq!(status.query_text(&json!("zzz")).as_deref(), Some("zzz"));
    }

    #[test]
    fn schemas_carry_type_enum_and_description() {
        let a = Arg::body("sandbox", Ty::Enum(&["x", "y"]), "which").required();
        assert_eq!(
            a.schema(),
            json!({"type": "string", "enum": ["x", "y"], "description": "which"})
        );
        assert!(a.required && a.place == Place::Body);
    }
}
