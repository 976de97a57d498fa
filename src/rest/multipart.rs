//! A streaming `multipart/form-data` reader (RFC 7578) for uploads: small fields are collected
//! (bounded), the file part is handed out in chunks as it arrives, so a file is never held
//! whole in memory. Hostile input: every header block, field and the number of parts is
//! bounded; no panics on any byte sequence (the parser works on indexes checked with `get`).

/// Longest boundary (RFC 2046 allows 70 characters).
const MAX_BOUNDARY: usize = 70;
/// Largest header block of one part.
const MAX_PART_HEADERS: usize = 4096;
/// Largest non-file field value.
pub const MAX_FIELD_BYTES: usize = 8192;
/// Most parts before the file.
const MAX_PARTS: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete small field.
    Field(String, String),
    /// The file part begins (its field name).
    FileStart(String),
    /// Bytes of the file part.
    FileData(Vec<u8>),
    /// The file part ended.
    FileEnd,
    /// The closing delimiter was read: nothing more matters.
    End,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MultipartError {
    /// Named for the client: what is wrong with the body.
    Malformed(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Looking for the first delimiter (after an optional preamble).
    Preamble,
    /// Just after a delimiter: `--` (end) or CRLF and headers.
    AfterDelimiter,
    Headers,
    Field(String),
    File,
    Done,
}

pub struct Multipart {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    parts: usize,
    value: Vec<u8>,
    /// The field name that starts the file part.
    file_field: &'static str,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty()
            && v.len() <= MAX_BOUNDARY
            && v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .then(|| v.to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `name` parameter of a part's `Content-Disposition`.
fn part_name(headers: &str) -> Option<String> {
    headers.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("name")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    })
}

impl Multipart {
    /// A reader for `boundary`; the part named `file_field` is streamed, others collected.
    pub fn new(boundary: &str, file_field: &'static str) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Self {
            delimiter,
            // A leading CRLF makes the first delimiter look like the others.
            buf: b"\r\n".to_vec(),
            state: State::Preamble,
            parts: 0,
            value: Vec::new(),
            file_field,
        }
    }

    /// Feeds bytes; returns what they completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, MultipartError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let progressed = self.step(&mut out)?;
            if !progressed {
                return Ok(out);
            }
        }
    }

    /// True once the closing delimiter was read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    fn step(&mut self, out: &mut Vec<Event>) -> Result<bool, MultipartError> {
        let dl = self.delimiter.len();
        match &self.state {
            State::Done => {
                self.buf.clear();
                Ok(false)
            }
            State::Preamble => match find(&self.buf, &self.delimiter) {
                Some(at) => {
                    self.take(at + dl);
                    self.state = State::AfterDelimiter;
                    Ok(true)
                }
                None => {
                    if self.buf.len() > MAX_PART_HEADERS + dl {
                        return Err(MultipartError::Malformed("no multipart delimiter"));
                    }
                    Ok(false)
                }
            },
            State::AfterDelimiter => {
                let Some(head) = self.buf.get(..2) else {
                    return Ok(false);
                };
                if head == b"--" {
                    self.state = State::Done;
                    out.push(Event::End);
                    return Ok(true);
                }
                if head != b"\r\n" {
                    return Err(MultipartError::Malformed("bad multipart delimiter line"));
                }
                self.take(2);
                self.parts += 1;
                if self.parts > MAX_PARTS {
                    return Err(MultipartError::Malformed("too many multipart parts"));
                }
                self.state = State::Headers;
                Ok(true)
            }
            State::Headers => match find(&self.buf, b"\r\n\r\n") {
                Some(at) if at <= MAX_PART_HEADERS => {
                    let headers = self.take(at + 4);
                    let text = String::from_utf8_lossy(&headers);
                    let name = part_name(&text)
                        .ok_or(MultipartError::Malformed("a part without a name"))?;
                    if name == self.file_field {
                        out.push(Event::FileStart(name));
                        self.state = State::File;
                    } else {
                        self.value.clear();
                        self.state = State::Field(name);
                    }
                    Ok(true)
                }
                Some(_) => Err(MultipartError::Malformed("part headers too large")),
                None if self.buf.len() > MAX_PART_HEADERS + 4 => {
                    Err(MultipartError::Malformed("part headers too large"))
                }
                None => Ok(false),
            },
            State::Field(_) | State::File => {
                let is_file = self.state == State::File;
                let (data, ended) = match find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        let data = self.take(at);
                        self.take(dl);
                        (data, true)
                    }
                    None => {
                        // Keep what could be the start of a delimiter.
                        let keep = dl.saturating_sub(1);
                        let n = self.buf.len().saturating_sub(keep);
                        if n == 0 {
                            return Ok(false);
                        }
                        (self.take(n), false)
                    }
                };
                if is_file {
                    if !data.is_empty() {
                        out.push(Event::FileData(data));
                    }
                    if ended {
                        out.push(Event::FileEnd);
                    }
                } else {
                    if self.value.len() + data.len() > MAX_FIELD_BYTES {
                        return Err(MultipartError::Malformed("a form field is too large"));
                    }
                    self.value.extend_from_slice(&data);
                    if ended {
                        if let State::Field(name) = std::mem::replace(&mut self.state, State::Done)
                        {
                            let v = String::from_utf8_lossy(&self.value).into_owned();
                            out.push(Event::Field(name, v));
                        }
                    }
                }
                if ended {
                    self.state = State::AfterDelimiter;
                }
                Ok(ended)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Vec<u8> {
        let mut b =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nabc\r\n".to_vec();
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        b.extend_from_slice(b"hello\r\n--Xy world");
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    }

    fn run(chunk: usize) -> (Vec<(String, String)>, Vec<u8>, bool) {
        let mut m = Multipart::new("XyZ", "file");
        let (mut fields, mut file, mut end) = (Vec::new(), Vec::new(), false);
        for c in body().chunks(chunk) {
            for e in m.push(c).unwrap() {
                match e {
                    Event::Field(k, v) => fields.push((k, v)),
                    Event::FileData(d) => file.extend(d),
                    Event::End => end = true,
                    _ => {}
                }
            }
        }
        (fields, file, end)
    }

    #[test]
    fn fields_and_file_come_out_whatever_the_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let (fields, file, end) = run(chunk);
            assert_eq!(
                fields,
                vec![("key".to_string(), "abc".to_string())],
                "{chunk}"
            );
            assert_eq!(file, b"hello\r\n--Xy world", "{chunk}");
            assert!(end, "{chunk}");
        }
    }

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("multipart/form-data;boundary=--x").as_deref(),
            Some("--x")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "a".repeat(71))),
            None
        );
    }

    #[test]
    fn oversized_headers_and_fields_are_refused() {
        let mut m = Multipart::new("b", "file");
        let mut big = b"--b\r\nX: ".to_vec();
        big.extend(vec![b'a'; MAX_PART_HEADERS + 10]);
        assert!(m.push(&big).is_err());
        let mut m = Multipart::new("b", "file");
        let mut big = b"--b\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n".to_vec();
        big.extend(vec![b'a'; MAX_FIELD_BYTES + 10]);
        assert!(m.push(&big).is_err());
    }
}
