//! HL7 v2's encoding rules: MLLP framing left in by a gateway, the separators MSH-1 and MSH-2 declare,
//! segments, fields, repetitions, components, subcomponents and escape sequences. Strict: anything off
//! is a [`Rejection`] that names it, never a guess.

use crate::reading::{ReasonCode, Rejection};

/// MLLP's start-of-block byte.
const MLLP_START: u8 = 0x0B;
/// MLLP's end-of-block byte, followed by a carriage return.
const MLLP_END: u8 = 0x1C;

/// Whether a payload is HL7 v2: `MSH` first, after an MLLP start byte if there is one.
pub(crate) fn is_hl7(payload: &[u8]) -> bool {
    payload.strip_prefix(&[MLLP_START]).unwrap_or(payload).starts_with(b"MSH")
}

/// The payload without the MLLP start byte and the end bytes (`0x1C`, `0x1C 0x0D`).
fn unframe(payload: &[u8]) -> &[u8] {
    let p = payload.strip_prefix(&[MLLP_START]).unwrap_or(payload);
    p.strip_suffix(&[MLLP_END, b'\r']).or_else(|| p.strip_suffix(&[MLLP_END])).unwrap_or(p)
}

fn syntax(reason: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::Hl7Syntax, reason)
}

/// The delimiters a message declares in MSH-1 and MSH-2 (`|` and `^~\&` unless it says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Separators {
    pub(crate) field: char,
    pub(crate) component: char,
    pub(crate) repetition: char,
    pub(crate) escape: char,
    pub(crate) subcomponent: char,
}

impl Separators {
    /// Reads MSH-1 and MSH-2 of `text`, which starts with `MSH`.
    fn of_header(text: &str) -> Result<Separators, Rejection> {
        let field = text.chars().nth(3).ok_or_else(|| syntax("MSH has no field separator (MSH-1)"))?;
        let encoding: Vec<char> =
            text[3 + field.len_utf8()..].chars().take_while(|c| !is_delimiting(*c, field)).collect();
        // The fifth character (truncation, v2.7 on) is declared but never used in a value we read.
        let &[component, repetition, escape, subcomponent, ..] = encoding.as_slice() else {
            return Err(syntax(format!(
                "MSH-2 {:?} declares {} encoding characters, 4 (or 5) are needed",
                String::from_iter(&encoding),
                encoding.len()
            )));
        };
        let all: Vec<char> = std::iter::once(field).chain(encoding.iter().copied()).collect();
        if encoding.len() > 5 || all.iter().any(|c| !c.is_ascii_punctuation()) {
            return Err(syntax(format!(
                "MSH-1/MSH-2 {:?}: the separators must be 5 (or 6) ASCII punctuation characters",
                String::from_iter(&all)
            )));
        }
        if (1..all.len()).any(|i| all[..i].contains(&all[i])) {
            return Err(syntax(format!("MSH-1/MSH-2 {:?} declare one character twice", String::from_iter(&all))));
        }
        Ok(Separators { field, component, repetition, escape, subcomponent })
    }

    /// The repetitions of a raw field.
    pub(crate) fn repetitions<'a>(&self, field: &'a str) -> impl Iterator<Item = &'a str> {
        field.split(self.repetition)
    }

    /// Component `n` (1-based) of a raw field or repetition; "" when absent.
    pub(crate) fn component<'a>(&self, value: &'a str, n: usize) -> &'a str {
        value.split(self.component).nth(n.saturating_sub(1)).unwrap_or_default()
    }

    /// Subcomponent `n` (1-based) of a raw component; "" when absent.
    pub(crate) fn subcomponent<'a>(&self, component: &'a str, n: usize) -> &'a str {
        component.split(self.subcomponent).nth(n.saturating_sub(1)).unwrap_or_default()
    }

    /// A raw value with its escape sequences replaced: `\F\ \S\ \T\ \R\ \E\` by the separators,
    /// `\Xhh…\` by the bytes it spells (UTF-8), `\H\ \N\` (highlighting) dropped; HL7's explicit null
    /// `""` is empty. Any other sequence (character-set switches, formatting, `\Z…\`) is refused.
    pub(crate) fn decode(&self, raw: &str) -> Result<String, Rejection> {
        if raw == "\"\"" {
            return Ok(String::new());
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find(self.escape) {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find(self.escape)
                .ok_or_else(|| syntax(format!("{raw:?} has an escape sequence without its closing {}", self.escape)))?;
            match &after[..end] {
                "F" => out.push(self.field),
                "S" => out.push(self.component),
                "T" => out.push(self.subcomponent),
                "R" => out.push(self.repetition),
                "E" => out.push(self.escape),
                "H" | "N" => {}
                hex if hex.starts_with('X') => out.push_str(&hex_text(&hex[1..]).ok_or_else(|| {
                    syntax(format!("{raw:?}: {e}{hex}{e} is not hex-encoded UTF-8", e = self.escape))
                })?),
                other => {
                    return Err(syntax(format!(
                        "{raw:?}: escape sequence {e}{other}{e} is not one vitalflow reads",
                        e = self.escape
                    )));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether `c` ends MSH-2: the field separator or a segment end.
fn is_delimiting(c: char, field: char) -> bool {
    c == field || c == '\r' || c == '\n'
}

/// The text an `\X…\` sequence spells in hex, if it is whole bytes of UTF-8.
fn hex_text(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// One segment: its id and raw fields.
#[derive(Debug)]
pub(crate) struct Segment<'a> {
    /// Three letters or digits: `MSH`, `PID`, `OBX`, …
    pub(crate) id: &'a str,
    /// `fields[i]` is field `i + 1`; for MSH, field 1 is the field separator itself.
    fields: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    /// Raw field `n` (1-based, as HL7 numbers them); "" when absent.
    pub(crate) fn field(&self, n: usize) -> &'a str {
        n.checked_sub(1).and_then(|i| self.fields.get(i)).copied().unwrap_or_default()
    }

    fn parse(line: &'a str, number: usize, separators: &Separators) -> Result<Segment<'a>, Rejection> {
        let id = line
            .get(..3)
            .filter(|id| id.starts_with(|c: char| c.is_ascii_uppercase()))
            .filter(|id| id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            .ok_or_else(|| {
                let start: String = line.chars().take(8).collect();
                syntax(format!("segment {number} begins {start:?}: a segment begins with three capitals or digits"))
            })?;
        let rest = &line[3..];
        let Some(rest) = rest.strip_prefix(separators.field) else {
            if rest.is_empty() {
                return Ok(Segment { id, fields: Vec::new() });
            }
            return Err(syntax(format!("segment {number} {id}: its id is not followed by the field separator")));
        };
        let mut fields: Vec<&str> = Vec::new();
        if id == "MSH" {
            // MSH-1 is the separator itself; MSH-2 holds the other separators and is never split.
            fields.push(&line[3..4]);
        }
        fields.extend(rest.split(separators.field));
        Ok(Segment { id, fields })
    }
}

/// A message: its separators and segments, borrowing the payload.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) separators: Separators,
    /// The segments in order; the first is MSH.
    pub(crate) segments: Vec<Segment<'a>>,
}

/// Parses a payload that [`is_hl7`]. Segments end in a carriage return (`\r`, HL7's rule); `\n` and
/// `\r\n` are accepted too, as files and some gateways write them, and empty lines are skipped.
pub(crate) fn parse(payload: &[u8]) -> Result<Message<'_>, Rejection> {
    let text = std::str::from_utf8(unframe(payload))
        .map_err(|e| syntax(format!("not UTF-8 (byte {} is not)", e.valid_up_to())))?;
    if !text.starts_with("MSH") {
        return Err(syntax("the message does not begin with MSH"));
    }
    let separators = Separators::of_header(text)?;
    let segments = text
        .split(['\r', '\n'])
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| Segment::parse(line, i + 1, &separators))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Message { separators, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Separators =
        Separators { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

    #[test]
    fn separators_come_from_msh_and_split_the_values() {
        let m = parse(b"\x0bMSH#*$!@#A#B\rPID###12*x@y@z$34*w\r\x1c\r").unwrap();
        let s = m.separators;
        assert_eq!((s.field, s.component, s.repetition, s.escape, s.subcomponent), ('#', '*', '$', '!', '@'));
        assert_eq!(m.segments[0].field(1), "#");
        assert_eq!(m.segments[0].field(2), "*$!@");
        assert_eq!(m.segments[0].field(4), "B");
        let pid3 = m.segments[1].field(3);
        let reps: Vec<_> = s.repetitions(pid3).collect();
        assert_eq!(reps, ["12*x@y@z", "34*w"]);
        assert_eq!(s.component(reps[0], 2), "x@y@z");
        assert_eq!(s.subcomponent(s.component(reps[0], 2), 3), "z");
        assert_eq!(s.component(reps[1], 9), "");
        assert_eq!(m.segments[1].field(40), "");
    }

    #[test]
    fn escapes_are_decoded_and_unknown_ones_refused() {
        let s = STANDARD;
        assert_eq!(s.decode(r"A\F\B\S\C\T\D\R\E\E\F").unwrap(), r"A|B^C&D~E\F");
        assert_eq!(s.decode(r"\H\bold\N\ M\XC3BC\ller").unwrap(), "bold Müller");
        assert_eq!(s.decode("\"\"").unwrap(), "");
        for bad in [r"open\F", r"\Z123\", r"\X4\", r"\XFF\", r"\.br\"] {
            assert_eq!(s.decode(bad).unwrap_err().code, ReasonCode::Hl7Syntax, "{bad}");
        }
        let custom = Separators { escape: '!', ..STANDARD };
        assert_eq!(custom.decode(r"a!F!b\c").unwrap(), r"a|b\c");
    }

    #[test]
    fn bad_framing_and_headers_are_syntax_errors() {
        for bad in [
            &b"MSH"[..],
            b"MSH|^~\\|x",
            b"MSH|^~\\&&|x",
            b"MSH|^~a&|x",
            b"MSH|^^\\&|x",
            b"MSH|^~\\&|x\rpid|1",
            b"MSH|^~\\&|x\rPIDX|1",
            b"MSH|^~\\&|x\xff\rPID|1",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ReasonCode::Hl7Syntax, "{}: {}", String::from_utf8_lossy(bad), e.reason);
        }
        assert!(is_hl7(b"\x0bMSH|") && is_hl7(b"MSH|") && !is_hl7(b"{\"MSH\": 1}") && !is_hl7(b" MSH|"));
        let m = parse(b"MSH|^~\\&|a\r\nPID|1\n\nOBX\r").unwrap();
        let ids: Vec<_> = m.segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["MSH", "PID", "OBX"]);
    }
}
