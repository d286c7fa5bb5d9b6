//! Reading and writing histories as JSON lines and as Jepsen's `history.edn`.
//!
//! Both formats hold one operation per line. EDN lines are maps with keyword keys, as Jepsen
//! writes them: `{:type :invoke, :f :cas, :value [3 0], :process 2, :time 123, :index 7}`. JSON
//! lines use the same field names without colons, plus an optional `key`:
//! `{"type":"invoke","f":"cas","value":[3,0],"process":2,"time":123,"index":7}`.
//!
//! The EDN reader covers what Jepsen histories contain: maps, vectors, lists, sets, keywords,
//! symbols (`nil`, `true`, `false`), integers, floats, strings, characters in strings, comments
//! and the `#_` discard. Nesting is bounded by [`NESTING_DEPTH_MAX`] so hostile input cannot
//! exhaust the stack. Errors carry the 1-based line number.

use std::fmt;
use std::io::{BufRead, Write};

use super::{History, Op, OpType, Process, Value};

/// Deepest nesting of collections the EDN reader accepts.
pub const NESTING_DEPTH_MAX: usize = 64;

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The input could not be read at all.
    #[error("cannot read input: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not valid EDN / JSON.
    #[error("line {line}: {message}")]
    Syntax {
        /// Source line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A line parsed but is not a valid operation.
    #[error("line {line}: {message}")]
    Op {
        /// Source line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which text format a history is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// One EDN map per line.
    Edn,
}

/// Read a whole history, choosing the format from the first non-blank line: a line starting
/// with `{"` (after whitespace) is JSON, anything else EDN.
pub fn read_history<R: BufRead>(reader: R) -> Result<History, ParseError> {
    let mut ops = Vec::new();
    let mut lines = Vec::new();
    let mut format = None;
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let text = line?;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        let fmt = *format.get_or_insert_with(|| detect_format(trimmed));
        let op = match fmt {
            Format::JsonLines => parse_json_op(trimmed, line_no)?,
            Format::Edn => parse_edn_op(trimmed, line_no)?,
        };
        ops.push(op);
        lines.push(line_no);
    }
    Ok(History::with_lines(ops, lines))
}

/// Read a history from a string (see [`read_history`]).
pub fn read_history_str(text: &str) -> Result<History, ParseError> {
    read_history(text.as_bytes())
}

fn detect_format(line: &str) -> Format {
    let after_brace = line.strip_prefix('{').map(str::trim_start);
    match after_brace {
        Some(rest) if rest.starts_with('"') || rest.starts_with('}') => Format::JsonLines,
        _ => Format::Edn,
    }
}

/// Write a history as JSON lines.
pub fn write_json_lines<W: Write>(ops: &[Op], mut out: W) -> std::io::Result<()> {
    for op in ops {
        let json = op_to_json(op);
        serde_json::to_writer(&mut out, &json)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Write a history as Jepsen-style EDN, one map per line.
pub fn write_edn<W: Write>(ops: &[Op], mut out: W) -> std::io::Result<()> {
    for op in ops {
        writeln!(out, "{}", EdnOp(op))?;
    }
    Ok(())
}

struct EdnOp<'a>(&'a Op);

impl fmt::Display for EdnOp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        let process = match &op.process {
            Process::Client(p) => p.to_string(),
            Process::Named(n) => format!(":{n}"),
        };
        write!(f, "{{:type :{}, :f ", op.kind.name())?;
        write_edn_value(&Value::Keyword(op.f.clone()), f)?;
        if let Some(key) = &op.key {
            f.write_str(", :key ")?;
            write_edn_value(key, f)?;
        }
        f.write_str(", :value ")?;
        write_edn_value(&op.value, f)?;
        write!(f, ", :process {process}, :time {}, :index {}", op.time_ns, op.index)?;
        if let Some(node) = &op.node {
            f.write_str(", :node ")?;
            write_edn_value(node, f)?;
        }
        if let Some(error) = &op.error {
            f.write_str(", :error ")?;
            write_edn_value(error, f)?;
        }
        f.write_str("}")
    }
}

/// Write a value as EDN text.
pub fn write_edn_value(value: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value {
        Value::Nil => f.write_str("nil"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) if x.0.is_finite() => write!(f, "{:?}", x.0),
        Value::Float(x) if x.0.is_nan() => f.write_str("##NaN"),
        Value::Float(x) if x.0 > 0.0 => f.write_str("##Inf"),
        Value::Float(_) => f.write_str("##-Inf"),
        Value::Str(s) => write_edn_string(s, f),
        Value::Keyword(k) => write!(f, ":{k}"),
        Value::Vector(items) => write_seq(f, "[", items, "]"),
        Value::Set(items) => write_seq(f, "#{", items, "}"),
        Value::Map(entries) => {
            f.write_str("{")?;
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_edn_value(k, f)?;
                f.write_str(" ")?;
                write_edn_value(v, f)?;
            }
            f.write_str("}")
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write_edn_value(item, f)?;
    }
    f.write_str(close)
}

fn write_edn_string(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

// ---------------------------------------------------------------------------------------------
// Turning a parsed map into an Op.

/// The fields of one record, whichever format they came from.
struct Fields {
    kind: Option<Value>,
    f: Option<Value>,
    value: Value,
    process: Option<Value>,
    time: Option<Value>,
    index: Option<Value>,
    key: Option<Value>,
    node: Option<Value>,
    error: Option<Value>,
}

fn fields_from_map(entries: Vec<(String, Value)>) -> Fields {
    let mut fields = Fields {
        kind: None,
        f: None,
        value: Value::Nil,
        process: None,
        time: None,
        index: None,
        key: None,
        node: None,
        error: None,
    };
    for (name, value) in entries {
        match name.as_str() {
            "type" => fields.kind = Some(value),
            "f" => fields.f = Some(value),
            "value" => fields.value = value,
            "process" => fields.process = Some(value),
            "time" => fields.time = Some(value),
            "index" => fields.index = Some(value),
            "key" => fields.key = Some(value),
            "node" => fields.node = Some(value),
            "error" => fields.error = Some(value),
            _ => {}
        }
    }
    fields
}

fn op_from_fields(fields: Fields, line: usize) -> Result<Op, ParseError> {
    let bad = |message: String| ParseError::Op { line, message };
    let kind_name = match &fields.kind {
        Some(v) => v.as_text().ok_or_else(|| bad(format!("type must be a keyword, got {v}")))?,
        None => return Err(bad("missing type".into())),
    };
    let kind = OpType::from_name(kind_name).ok_or_else(|| {
        bad(format!("unknown type {kind_name:?} (expected invoke, ok, fail or info)"))
    })?;
    let f = match &fields.f {
        Some(v) => match v {
            Value::Str(s) | Value::Keyword(s) => s.clone(),
            other => other.to_string(),
        },
        None => return Err(bad("missing f".into())),
    };
    let process = match fields.process {
        Some(Value::Int(p)) => Process::Client(p),
        Some(Value::Keyword(n)) | Some(Value::Str(n)) => Process::Named(n),
        Some(other) => {
            return Err(bad(format!("process must be an integer or keyword, got {other}")))
        }
        None => return Err(bad("missing process".into())),
    };
    let int_field = |name: &str, v: Option<Value>| -> Result<Option<i64>, ParseError> {
        match v {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Int(i)) => Ok(Some(i)),
            Some(other) => Err(bad(format!("{name} must be an integer, got {other}"))),
        }
    };
    let line_i64 = i64::try_from(line).unwrap_or(i64::MAX);
    let time_ns = int_field("time", fields.time)?.unwrap_or(line_i64);
    let index = int_field("index", fields.index)?.unwrap_or(line_i64 - 1);
    Ok(Op {
        process,
        kind,
        f,
        key: fields.key,
        value: fields.value,
        time_ns,
        index,
        node: fields.node,
        error: fields.error,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON.

/// Parse one JSON-lines record.
pub fn parse_json_op(text: &str, line: usize) -> Result<Op, ParseError> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ParseError::Syntax { line, message: format!("invalid JSON: {e}") })?;
    let serde_json::Value::Object(map) = json else {
        return Err(ParseError::Op { line, message: "a record must be a JSON object".into() });
    };
    let mut entries = Vec::with_capacity(map.len());
    for (name, v) in map {
        entries.push((name, value_from_json(v, line)?));
    }
    op_from_fields(fields_from_map(entries), line)
}

fn value_from_json(json: serde_json::Value, line: usize) -> Result<Value, ParseError> {
    Ok(match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(x)) => Value::Float(super::Float(x)),
            (None, None) => {
                return Err(ParseError::Syntax {
                    line,
                    message: format!("number {n} out of range"),
                })
            }
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::Vector(
            items.into_iter().map(|v| value_from_json(v, line)).collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| Ok((Value::Str(k), value_from_json(v, line)?)))
                .collect::<Result<_, ParseError>>()?,
        ),
    })
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(x) => serde_json::Value::from(x.0),
        Value::Str(s) | Value::Keyword(s) => serde_json::Value::String(s.clone()),
        Value::Vector(items) | Value::Set(items) => {
            serde_json::Value::Array(items.iter().map(value_to_json).collect())
        }
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let name = k.as_text().map_or_else(|| k.to_string(), str::to_string);
                    (name, value_to_json(v))
                })
                .collect(),
        ),
    }
}

fn op_to_json(op: &Op) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("type".into(), op.kind.name().into());
    map.insert("f".into(), op.f.clone().into());
    if let Some(key) = &op.key {
        map.insert("key".into(), value_to_json(key));
    }
    map.insert("value".into(), value_to_json(&op.value));
    let process = match &op.process {
        Process::Client(p) => serde_json::Value::from(*p),
        Process::Named(n) => serde_json::Value::from(n.clone()),
    };
    map.insert("process".into(), process);
    map.insert("time".into(), op.time_ns.into());
    map.insert("index".into(), op.index.into());
    if let Some(node) = &op.node {
        map.insert("node".into(), value_to_json(node));
    }
    if let Some(error) = &op.error {
        map.insert("error".into(), value_to_json(error));
    }
    serde_json::Value::Object(map)
}

// ---------------------------------------------------------------------------------------------
// EDN.

/// Parse one EDN record (a map on one line).
pub fn parse_edn_op(text: &str, line: usize) -> Result<Op, ParseError> {
    let value = parse_edn_value(text, line)?;
    let Value::Map(entries) = value else {
        return Err(ParseError::Op { line, message: "a record must be an EDN map".into() });
    };
    let entries = entries
        .into_iter()
        .map(|(k, v)| match k {
            Value::Keyword(name) | Value::Str(name) => Ok((name, v)),
            other => {
                Err(ParseError::Op { line, message: format!("map key {other} is not a keyword") })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    op_from_fields(fields_from_map(entries), line)
}

/// Parse exactly one EDN value from `text` (surrounding whitespace and comments allowed).
pub fn parse_edn_value(text: &str, line: usize) -> Result<Value, ParseError> {
    let mut reader = EdnReader { src: text.as_bytes(), pos: 0, line };
    let value = reader.value(0)?.ok_or_else(|| reader.err("expected a value"))?;
    reader.skip_ws();
    if reader.pos < reader.src.len() {
        return Err(reader.err("unexpected text after the value"));
    }
    Ok(value)
}

struct EdnReader<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl EdnReader<'_> {
    fn err(&self, message: &str) -> ParseError {
        ParseError::Syntax {
            line: self.line,
            message: format!("{message} at column {} of EDN", self.pos + 1),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || c == b',' {
                self.pos += 1;
            } else if c == b';' {
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    /// The next value, or `None` at a closing delimiter or the end of input.
    fn value(&mut self, depth: usize) -> Result<Option<Value>, ParseError> {
        if depth > NESTING_DEPTH_MAX {
            return Err(self.err("collections nested too deeply"));
        }
        self.skip_ws();
        let Some(c) = self.peek() else { return Ok(None) };
        let value = match c {
            b')' | b']' | b'}' => return Ok(None),
            b'[' => {
                self.pos += 1;
                Value::Vector(self.seq(b']', depth)?)
            }
            b'(' => {
                self.pos += 1;
                Value::Vector(self.seq(b')', depth)?)
            }
            b'{' => {
                self.pos += 1;
                self.map(depth)?
            }
            b'#' => self.dispatch(depth)?,
            b'"' => Value::Str(self.string()?),
            b':' => {
                self.pos += 1;
                let tok = self.token();
                if tok.is_empty() {
                    return Err(self.err("empty keyword"));
                }
                Value::Keyword(tok)
            }
            b'\\' => return Err(self.err("character literals are not supported")),
            _ => self.atom()?,
        };
        Ok(Some(value))
    }

    fn dispatch(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1;
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                Ok(Value::set(self.seq(b'}', depth)?))
            }
            Some(b'_') => {
                self.pos += 1;
                self.value(depth + 1)?.ok_or_else(|| self.err("nothing to discard after #_"))?;
                self.value(depth)?.ok_or_else(|| self.err("expected a value after #_ discard"))
            }
            Some(b'#') => {
                self.pos += 1;
                match self.token().as_str() {
                    "Inf" => Ok(Value::Float(super::Float(f64::INFINITY))),
                    "-Inf" => Ok(Value::Float(super::Float(f64::NEG_INFINITY))),
                    "NaN" => Ok(Value::Float(super::Float(f64::NAN))),
                    _ => Err(self.err("unknown ## symbolic value")),
                }
            }
            _ => {
                // A tagged literal such as #inst "..." or #jepsen.history.Op{...}: keep the
                // tagged value itself, the tag carries nothing the checkers need.
                let tag = self.token();
                if tag.is_empty() {
                    return Err(self.err("unsupported # dispatch"));
                }
                self.value(depth + 1)?.ok_or_else(|| self.err("tag without a value"))
            }
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Value>, ParseError> {
        let mut items = Vec::new();
        loop {
            if let Some(v) = self.value(depth + 1)? {
                items.push(v);
                continue;
            }
            return match self.peek() {
                Some(c) if c == close => {
                    self.pos += 1;
                    Ok(items)
                }
                Some(_) => Err(self.err("mismatched closing delimiter")),
                None => Err(self.err("unexpected end of line inside a collection")),
            };
        }
    }

    fn map(&mut self, depth: usize) -> Result<Value, ParseError> {
        let items = self.seq(b'}', depth)?;
        if items.len() % 2 != 0 {
            return Err(self.err("map has a key without a value"));
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || b",()[]{}\";".contains(&c) {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(self.src.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    fn atom(&mut self) -> Result<Value, ParseError> {
        let tok = self.token();
        match tok.as_str() {
            "" => Err(self.err("unexpected character")),
            "nil" => Ok(Value::Nil),
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            t if starts_number(t) => self.number(t),
            // Other symbols have no meaning in histories; keep their text.
            t => Ok(Value::Str(t.to_string())),
        }
    }

    fn number(&self, tok: &str) -> Result<Value, ParseError> {
        let int_text = tok.strip_suffix('N').unwrap_or(tok);
        if let Ok(i) = int_text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        let float_text = tok.strip_suffix('M').unwrap_or(tok);
        match float_text.parse::<f64>() {
            Ok(x) => Ok(Value::Float(super::Float(x))),
            Err(_) => Err(self.err(&format!("invalid number {tok:?}"))),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated escape in string"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'u' => {
                            let hex = self
                                .src
                                .get(self.pos..self.pos + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err("invalid \\u escape"))?;
                            self.pos += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(hex.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.err("unknown escape in string")),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not valid UTF-8"))
    }
}

fn starts_number(tok: &str) -> bool {
    let mut chars = tok.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('-') | Some('+') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jepsen_edn_line() {
        let h = read_history_str(
            "{:type :invoke, :f :cas, :value [3 0], :process 2, :time 123, :index 7}\n",
        )
        .expect("valid EDN");
        let op = &h.ops()[0];
        assert_eq!(op.kind, OpType::Invoke);
        assert_eq!(op.f, "cas");
        assert_eq!(op.value, Value::Vector(vec![Value::Int(3), Value::Int(0)]));
        assert_eq!(op.process, Process::Client(2));
        assert_eq!((op.time_ns, op.index), (123, 7));
    }

    #[test]
    fn reads_json_line() {
        let h = read_history_str(
            r#"{"type":"ok","f":"read","value":null,"process":0,"time":5,"index":1,"key":"a"}"#,
        )
        .expect("valid JSON");
        let op = &h.ops()[0];
        assert_eq!(op.kind, OpType::Ok);
        assert_eq!(op.value, Value::Nil);
        assert_eq!(op.key, Some(Value::Str("a".into())));
    }

    #[test]
    fn edn_and_json_round_trip() {
        let ops = vec![
            Op::new(
                1,
                OpType::Invoke,
                "cas",
                Value::Vector(vec![Value::Int(3), Value::Nil]),
                10,
                0,
            )
            .with_key(Value::Str("k \"q\"\n".into())),
            Op {
                process: Process::Named("nemesis".into()),
                kind: OpType::Info,
                f: "start".into(),
                key: None,
                value: Value::set(vec![Value::Keyword("n1".into()), Value::Int(-4)]),
                time_ns: 11,
                index: 1,
                node: Some(Value::Str("n2".into())),
                error: Some(Value::Keyword("timeout".into())),
            },
        ];
        let mut edn = Vec::new();
        write_edn(&ops, &mut edn).expect("write to memory");
        let back = read_history(edn.as_slice()).expect("own EDN parses");
        assert_eq!(back.ops(), ops.as_slice());

        let plain: Vec<Op> = ops.into_iter().take(1).collect();
        let mut json = Vec::new();
        write_json_lines(&plain, &mut json).expect("write to memory");
        let back = read_history(json.as_slice()).expect("own JSON parses");
        assert_eq!(back.ops(), plain.as_slice());
    }

    #[test]
    fn truncated_line_is_a_syntax_error_with_line_number() {
        let text = "{:type :invoke, :f :read, :value nil, :process 0, :time 1, :index 0}\n\
                    {:type :ok, :f :read, :value [1 2";
        match read_history_str(text) {
            Err(ParseError::Syntax { line: 2, message }) => {
                assert!(message.contains("end of line"), "{message}")
            }
            other => panic!("expected a syntax error on line 2, got {other:?}"),
        }
    }

    #[test]
    fn unknown_type_is_rejected() {
        let text = "{:type :maybe, :f :read, :value nil, :process 0, :time 1, :index 0}";
        match read_history_str(text) {
            Err(ParseError::Op { line: 1, message }) => {
                assert!(message.contains("unknown type"), "{message}")
            }
            other => panic!("expected an op error, got {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("{{:type :ok, :f :r, :process 0, :value {}}}", "[".repeat(10_000));
        assert!(read_history_str(&deep).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let samples = [
            "{",
            "}",
            "[",
            "#",
            "#{",
            "#_",
            "##",
            "\"",
            "\\",
            ":",
            "{:type}",
            "{:type :ok :f}",
            "{\"type\":",
            "{\"type\":1}",
            "{:a 1 :b}",
            "\"\\u12\"",
            "-",
            "+1",
            "1e999999",
            "{:type :ok, :f :read, :process 1.5}",
            "{:type :ok, :f :r, :process 0, :value ##X}",
            "\u{00e9}\u{00e9}",
            "{:type :ok, :f :r, :process 0, :value \"\u{00e9}\"}",
            "#tag",
            "()",
            "{:type :invoke :f :w :process :p :time \"x\"}",
        ];
        for s in samples {
            let _ = read_history_str(s);
        }
        // Every byte prefix of a valid line, as a truncated write would leave it.
        let line = "{:type :ok, :f :cas, :value [[1 \"a\"] #{2 3} (4)], :process 2, :time 9}";
        for end in 0..=line.len() {
            if let Some(prefix) = line.get(..end) {
                let _ = read_history_str(prefix);
            }
        }
    }
}
