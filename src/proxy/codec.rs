//! The PostgreSQL frontend/backend protocol (version 3) as the proxy reads
//! it: the untagged start-up packets (StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest), a streaming framer that finds message
//! boundaries in whatever the socket hands over without copying the bytes
//! it only forwards, and readers for the bodies of the messages the
//! recorder looks into. Nothing here writes to a socket.

use std::fmt;

/// The start-up codes of the untagged first packets.
pub const PROTOCOL_3: u32 = 196_608;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// The largest start-up packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP: usize = 10_000;

/// A message body that does not hold what its type says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed protocol message: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// What the first packet of a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// A StartupMessage: the protocol version and the parameters (user,
    /// database, application_name, options ...), in order.
    Start {
        version: u32,
        params: Vec<(String, String)>,
    },
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        key: i32,
    },
}

/// Read a start-up packet body (everything after its length word).
pub fn read_startup(body: &[u8]) -> Result<Startup, Malformed> {
    let mut r = Reader::new(body);
    let code = r.u32()?;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST => Ok(Startup::Cancel {
            pid: r.i32()?,
            key: r.i32()?,
        }),
        version => {
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name.to_string(), value.to_string()));
            }
            Ok(Startup::Start { version, params })
        }
    }
}

/// A CancelRequest packet for `pid` and `key`.
pub fn cancel_packet(pid: i32, key: i32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..4].copy_from_slice(&16u32.to_be_bytes());
    p[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    p[8..12].copy_from_slice(&pid.to_be_bytes());
    p[12..].copy_from_slice(&key.to_be_bytes());
    p
}

/// What the framer reports about one message of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    /// Where the message ends in the chunk just fed (exclusive): the
    /// bytes up to here can be forwarded as whole messages.
    pub end: usize,
    /// Whether the body was collected (`Framer::body`).
    pub collected: bool,
    /// The body was longer than the collection limit and was cut.
    pub truncated: bool,
}

/// Finds message boundaries in a stream of tagged messages (one byte of
/// type, a 4-byte length that counts itself, the body), chunk by chunk,
/// as the socket hands the bytes over. The bodies of the messages the
/// caller asks for are collected (up to `limit` bytes each); every other
/// byte is only counted. The work per chunk is one step per message, not
/// per byte.
#[derive(Debug)]
pub struct Framer {
    /// Header bytes of a message whose header spans chunks.
    head: [u8; 5],
    head_len: usize,
    /// The message being read: its tag, body bytes still to come, and
    /// whether it is collected.
    tag: u8,
    remaining: usize,
    collecting: bool,
    truncated: bool,
    body: Vec<u8>,
    limit: usize,
}

impl Framer {
    pub fn new(limit: usize) -> Framer {
        Framer {
            head: [0; 5],
            head_len: 0,
            tag: 0,
            remaining: 0,
            collecting: false,
            truncated: false,
            body: Vec::new(),
            limit,
        }
    }

    /// Whether a message is in progress (its header or body incomplete).
    pub fn in_message(&self) -> bool {
        self.head_len > 0 || self.remaining > 0
    }

    /// The body of the last collected message (valid until the next step).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Step through `chunk` from `pos`: returns the next message that
    /// ends inside the chunk (and where the caller should go on), or
    /// `None` when the chunk ends inside a message. `collect(tag)` says
    /// whether to keep that message's body.
    pub fn next(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        collect: impl Fn(u8) -> bool,
    ) -> Result<Option<Frame>, Malformed> {
        loop {
            if self.remaining == 0 && self.head_len < 5 {
                // Reading a header.
                if *pos >= chunk.len() {
                    return Ok(None);
                }
                let take = (5 - self.head_len).min(chunk.len() - *pos);
                self.head[self.head_len..self.head_len + take]
                    .copy_from_slice(&chunk[*pos..*pos + take]);
                self.head_len += take;
                *pos += take;
                if self.head_len < 5 {
                    return Ok(None);
                }
                let len =
                    u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]])
                        as usize;
                if len < 4 {
                    return Err(Malformed("a message length below 4"));
                }
                self.tag = self.head[0];
                self.remaining = len - 4;
                self.collecting = collect(self.tag);
                self.truncated = false;
                self.body.clear();
                if self.remaining == 0 {
                    self.head_len = 0;
                    return Ok(Some(self.frame(*pos)));
                }
                continue;
            }
            // Reading a body.
            if *pos >= chunk.len() {
                return Ok(None);
            }
            let take = self.remaining.min(chunk.len() - *pos);
            if self.collecting {
                let room = self.limit.saturating_sub(self.body.len());
                let keep = take.min(room);
                self.body.extend_from_slice(&chunk[*pos..*pos + keep]);
                if keep < take {
                    self.truncated = true;
                }
            }
            *pos += take;
            self.remaining -= take;
            if self.remaining == 0 {
                self.head_len = 0;
                return Ok(Some(self.frame(*pos)));
            }
            return Ok(None);
        }
    }

    fn frame(&self, end: usize) -> Frame {
        Frame {
            tag: self.tag,
            end,
            collected: self.collecting,
            truncated: self.truncated,
        }
    }
}

/// A cursor over a message body.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Malformed("a field runs past the end of its message"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(self.u32()? as i32)
    }

    /// A NUL-terminated string (lossy UTF-8 is the caller's choice: the
    /// protocol's strings are in the client encoding, UTF-8 here).
    pub fn cstr(&mut self) -> Result<&'a str, Malformed> {
        let rest = &self.buf[self.pos..];
        let n = memchr::memchr(0, rest).ok_or(Malformed("a string without its NUL"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| Malformed("a string not in UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    /// A value of a Bind or DataRow: `None` for SQL NULL (length -1).
    pub fn value(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.bytes(n as usize)?))
    }
}

/// Frontend message tags the proxy reads.
pub mod front {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const TERMINATE: u8 = b'X';
    pub const FUNCTION_CALL: u8 = b'F';
    /// PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse:
    /// never collected, never recorded.
    pub const PASSWORD: u8 = b'p';
}

/// Backend message tags the proxy reads.
pub mod back {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const ERROR: u8 = b'E';
    pub const NOTICE: u8 = b'N';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const NO_DATA: u8 = b'n';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const COPY_IN: u8 = b'G';
    pub const COPY_OUT: u8 = b'H';
    pub const COPY_BOTH: u8 = b'W';
    pub const NOTIFICATION: u8 = b'A';
    pub const FUNCTION_RESULT: u8 = b'V';
}

/// The parts of an ErrorResponse the record keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
}

/// Read an ErrorResponse (or NoticeResponse) body.
pub fn read_error(body: &[u8]) -> Result<ErrorFields, Malformed> {
    let mut r = Reader::new(body);
    let mut e = ErrorFields::default();
    loop {
        let code = r.u8()?;
        if code == 0 {
            break;
        }
        let v = String::from_utf8_lossy(cstr_bytes(&mut r)?).into_owned();
        match code {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.sqlstate = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            _ => {}
        }
    }
    Ok(e)
}

fn cstr_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Malformed> {
    let rest = &r.buf[r.pos..];
    let n = memchr::memchr(0, rest).ok_or(Malformed("a string without its NUL"))?;
    r.pos += n + 1;
    Ok(&rest[..n])
}

/// A column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The table's OID and the column's number when it is a table's column.
    pub table_oid: u32,
    pub type_oid: u32,
    /// 0 text, 1 binary (as the Describe says: the Bind may still choose).
    pub format: i16,
}

pub fn read_row_description(body: &[u8]) -> Result<Vec<Column>, Malformed> {
    let mut r = Reader::new(body);
    let n = r.i16()?.max(0) as usize;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8_lossy(cstr_bytes(&mut r)?).into_owned();
        let table_oid = r.u32()?;
        let _attnum = r.i16()?;
        let type_oid = r.u32()?;
        let _size = r.i16()?;
        let _modifier = r.i32()?;
        let format = r.i16()?;
        cols.push(Column {
            name,
            table_oid,
            type_oid,
            format,
        });
    }
    Ok(cols)
}

/// The values of a DataRow (`None`: NULL).
pub fn read_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, Malformed> {
    let mut r = Reader::new(body);
    let n = r.i16()?.max(0) as usize;
    (0..n).map(|_| r.value()).collect()
}

/// A Parse: the statement's name (empty: unnamed), its SQL and the
/// parameter types the client declared (0: let the server infer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    pub param_types: Vec<u32>,
}

pub fn read_parse(body: &[u8]) -> Result<Parse<'_>, Malformed> {
    let mut r = Reader::new(body);
    let name = r.cstr()?;
    let sql = r.cstr()?;
    let n = r.i16()?.max(0) as usize;
    let param_types = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    Ok(Parse {
        name,
        sql,
        param_types,
    })
}

/// A Bind: portal, statement, the parameters with their formats, and the
/// result formats asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// One format per parameter, expanded from the message's 0, 1 or n codes.
    pub params: Vec<(i16, Option<&'a [u8]>)>,
    /// As sent: none (all text), one (for all) or one per column.
    pub result_formats: Vec<i16>,
}

pub fn read_bind(body: &[u8]) -> Result<Bind<'_>, Malformed> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = r.i16()?.max(0) as usize;
    let formats: Vec<i16> = (0..nf).map(|_| r.i16()).collect::<Result<_, _>>()?;
    let np = r.i16()?.max(0) as usize;
    let mut params = Vec::with_capacity(np);
    for i in 0..np {
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats
                .get(i)
                .ok_or(Malformed("fewer formats than parameters"))?,
        };
        params.push((format, r.value()?));
    }
    let nr = r.i16()?.max(0) as usize;
    let result_formats = (0..nr).map(|_| r.i16()).collect::<Result<_, _>>()?;
    Ok(Bind {
        portal,
        statement,
        params,
        result_formats,
    })
}

/// The format of result column `i` from a Bind's result format codes.
pub fn result_format(codes: &[i16], i: usize) -> i16 {
    match codes.len() {
        0 => 0,
        1 => codes[0],
        _ => codes.get(i).copied().unwrap_or(0),
    }
}

/// Describe and Close: `S` (statement) or `P` (portal), and the name.
pub fn read_target(body: &[u8]) -> Result<(u8, &str), Malformed> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    Ok((kind, r.cstr()?))
}

/// Execute: the portal and the row limit (0: all).
pub fn read_execute(body: &[u8]) -> Result<(&str, i32), Malformed> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    Ok((portal, r.i32()?))
}

/// ParameterDescription: the parameter types the server decided.
pub fn read_parameter_description(body: &[u8]) -> Result<Vec<u32>, Malformed> {
    let mut r = Reader::new(body);
    let n = r.i16()?.max(0) as usize;
    (0..n).map(|_| r.u32()).collect()
}

/// A command tag's row count: the last number of `INSERT 0 5`,
/// `UPDATE 3`, `SELECT 2`, `COPY 7`; none for `BEGIN`, `COMMIT` ...
pub fn tag_rows(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    let verb = words.next()?;
    let last = tag.rsplit(' ').next()?;
    match verb {
        "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "MERGE" | "FETCH" | "MOVE" | "COPY" => {
            last.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Feed `stream` in chunks of every size: the same frames come out,
    /// with the bodies asked for, whatever the split.
    #[test]
    fn framing_is_independent_of_the_chunking() {
        let mut stream = msg(b'Q', b"SELECT 1\0");
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'D', &[0u8; 300]));
        stream.extend(msg(b'Z', b"I"));
        for size in 1..=stream.len() {
            let mut f = Framer::new(100);
            let mut seen = Vec::new();
            let mut offset = 0;
            for chunk in stream.chunks(size) {
                let mut pos = 0;
                while let Some(fr) = f.next(chunk, &mut pos, |t| t != b'S').unwrap() {
                    seen.push((fr.tag, offset + fr.end, f.body().to_vec(), fr.truncated));
                }
                assert_eq!(pos, chunk.len());
                offset += chunk.len();
            }
            assert!(!f.in_message());
            let tags: Vec<u8> = seen.iter().map(|s| s.0).collect();
            assert_eq!(tags, b"QSDZ", "chunk size {size}");
            assert_eq!(seen[0].2, b"SELECT 1\0");
            assert_eq!(seen[0].1, 14);
            assert_eq!((seen[2].2.len(), seen[2].3), (100, true));
            assert_eq!(seen[3].2, b"I");
            assert_eq!(seen[3].1, stream.len());
        }
    }

    #[test]
    fn a_length_below_four_is_malformed() {
        let mut f = Framer::new(10);
        let mut pos = 0;
        assert!(f.next(&[b'Q', 0, 0, 0, 3], &mut pos, |_| true).is_err());
    }

    #[test]
    fn startup_packets() {
        let mut body = PROTOCOL_3.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0ann\0database\0shop\0\0");
        assert_eq!(
            read_startup(&body).unwrap(),
            Startup::Start {
                version: PROTOCOL_3,
                params: vec![
                    ("user".into(), "ann".into()),
                    ("database".into(), "shop".into())
                ]
            }
        );
        assert_eq!(
            read_startup(&SSL_REQUEST.to_be_bytes()).unwrap(),
            Startup::Ssl
        );
        let c = cancel_packet(42, -7);
        assert_eq!(
            read_startup(&c[4..]).unwrap(),
            Startup::Cancel { pid: 42, key: -7 }
        );
    }

    #[test]
    fn bind_expands_formats() {
        let mut b = b"p1\0s1\0".to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        let bind = read_bind(&b).unwrap();
        assert_eq!(bind.portal, "p1");
        assert_eq!(bind.statement, "s1");
        assert_eq!(
            bind.params,
            vec![(1, Some(&7i32.to_be_bytes()[..])), (1, None)]
        );
        assert!(read_bind(&b[..b.len() - 3]).is_err());
    }

    #[test]
    fn tags_give_their_rows() {
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("UPDATE 0"), Some(0));
        assert_eq!(tag_rows("SELECT 12"), Some(12));
        assert_eq!(tag_rows("BEGIN"), None);
        assert_eq!(tag_rows("CREATE TABLE"), None);
    }

    #[test]
    fn errors_keep_code_and_message() {
        let body = b"SERROR\0VERROR\0C40001\0Mcould not serialize\0Dsome detail\0\0";
        let e = read_error(body).unwrap();
        assert_eq!(e.sqlstate, "40001");
        assert_eq!(e.message, "could not serialize");
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.detail.as_deref(), Some("some detail"));
    }
}
