//! tshark's JSON (`-T json`): a small parser that keeps every key of an
//! object, duplicates included, in order.

use std::borrow::Cow;

pub(crate) fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// (position, length) of a `_raw` array: `[hex, position, length, bitmask, type]`.
pub(super) fn raw_span(raw: &Json) -> Option<(u64, u64)> {
    let Json::Arr(a) = raw else { return None };
    let n = |i: usize| match a.get(i)? {
        Json::Num(s) => s.parse().ok(),
        _ => None,
    };
    Some((n(1)?, n(2)?))
}

/// A JSON value, objects keeping every key (duplicates too) in order. Strings
/// borrow from the text unless they hold escapes.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    Str(Cow<'a, str>),
    Num(&'a str),
    Literal,
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    pub(crate) fn entries(&self) -> &[(Cow<'a, str>, Json<'a>)] {
        match self {
            Json::Obj(entries) => entries,
            _ => &[],
        }
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn num(&self, key: &str) -> Option<u64> {
        parse_num(self.str(key)?)
    }

    /// Where field `key` lies in the frame, from its `_raw` twin.
    pub(super) fn span(&self, key: &str) -> Option<(u64, u64)> {
        raw_span(self.get(&format!("{key}_raw"))?)
    }

    pub(super) fn span_end(&self, key: &str) -> Option<u64> {
        self.span(key).map(|(p, l)| p + l)
    }

    /// Field `key` if it ends by `end`.
    pub(super) fn within(&self, key: &str, end: u64) -> Option<&str> {
        let (p, l) = self.span(key)?;
        (p + l <= end).then_some(())?;
        self.str(key)
    }

    /// (start, end) of a sample or record: from its first field (the
    /// enterprise/format word) to the end its length field declares.
    pub(super) fn extent(&self, length: &str) -> Option<(u64, u64)> {
        let start = self.span("sflow.enterprise")?.0;
        Some((start, self.span_end(length)? + self.num(length)?))
    }
}

/// A JSON parser keeping duplicate keys and their order.
pub(crate) struct Parser<'a> {
    t: &'a str,
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn parse(s: &'a [u8]) -> Result<Json<'a>, String> {
        let t = std::str::from_utf8(s).map_err(|e| e.to_string())?;
        let mut p = Parser { t, s, i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != s.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        // tshark indents deeply: skip spaces 16 at a time (memcmp), which
        // matters in unoptimised test builds.
        const SPACES: &[u8] = b"                ";
        loop {
            match self.s.get(self.i) {
                Some(b' ') if self.s[self.i..].starts_with(SPACES) => self.i += SPACES.len(),
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.i += 1,
                _ => return,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let found = self.s.get(self.i) == Some(&c);
        if found {
            self.i += 1;
        }
        found
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn text(&self, from: usize) -> Result<&'a str, String> {
        self.t
            .get(from..self.i)
            .ok_or_else(|| format!("bad text at byte {from}"))
    }

    fn value(&mut self) -> Result<Json<'a>, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                if self.eat(b'}') {
                    return Ok(Json::Obj(entries));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    entries.push((key, self.value()?));
                    if !self.eat(b',') {
                        self.expect(b'}')?;
                        return Ok(Json::Obj(entries));
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    if !self.eat(b',') {
                        self.expect(b']')?;
                        return Ok(Json::Arr(items));
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.i)
                {
                    self.i += 1;
                }
                Ok(Json::Num(self.text(start)?))
            }
            Some(b't' | b'f' | b'n') => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if self.s[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Ok(Json::Literal);
                    }
                }
                Err(format!("bad literal at byte {}", self.i))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.i));
        }
        self.i += 1;
        let start = self.i;
        // Fast path (most of the output: hex dumps): no escape before the
        // closing quote. `str::find` uses memchr, fast even in debug builds.
        let rest = &self.t[start..];
        let end = rest.find('"').ok_or("unterminated string")?;
        if !rest[..end].contains('\\') {
            self.i = start + end + 1;
            return Ok(Cow::Borrowed(&rest[..end]));
        }
        let mut out = self.s[start..self.i].to_vec();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => {
                    return Ok(Cow::Owned(
                        String::from_utf8(out).map_err(|e| e.to_string())?,
                    ));
                }
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(digits)
    }
}
