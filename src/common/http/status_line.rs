//! The bytes of a response head: status line and header lines, written without `format!`
//! (the hot path of every request). Used by complete responses and by streamed ones.

/// The status line and the handler's own headers, shared by every kind of reply.
pub fn status_and_headers(out: &mut Vec<u8>, status: u16, headers: &[(String, String)]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        // Header values come from our own code, but never let a stray newline split
        // the response.
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            out.extend(
                v.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        } else {
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The reason phrase of `status` (RFC 9110 §15), the one table every status line written
/// by this server uses. A code without a registered phrase gets an empty one, which RFC
/// 9112 allows, rather than a made-up word.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16) -> String {
        let mut out = Vec::new();
        status_and_headers(&mut out, status, &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn status_lines_carry_the_registered_reason_phrase() {
        assert_eq!(line(410), "HTTP/1.1 410 Gone\r\n");
        assert_eq!(line(200), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(413), "HTTP/1.1 413 Content Too Large\r\n");
        // Unregistered: an empty phrase (allowed), never a stand-in word.
        assert_eq!(line(299), "HTTP/1.1 299 \r\n");
    }
}
