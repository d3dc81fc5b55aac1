//! The smallest HTTP/1.1 the `/metrics` endpoint needs, without sockets: find the end of a
//! request head in bounded input, decide what it asks for, and build the whole response.
//!
//! A scraper sends `GET /metrics HTTP/1.1` plus a few headers and reads one response; the
//! server answers and closes (`Connection: close`), so there is no keep-alive, no body to
//! read, no chunking. Anything else gets a short error status. Input is bounded by
//! [`MAX_REQUEST_HEAD`]: a client that sends more without finishing its head gets 431.

/// The most request-head bytes kept per connection (Prometheus sends about 300).
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The head is not complete yet: read more.
    Incomplete,
    /// `GET /metrics` (a query string is ignored); `head_only` for `HEAD`.
    Metrics {
        /// Send the headers without the body.
        head_only: bool,
    },
    /// Answer with this status and close.
    Refused(Status),
}

/// The error statuses the endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not an HTTP/1.x request line.
    BadRequest,
    /// A path other than `/metrics`.
    NotFound,
    /// A method other than GET or HEAD.
    MethodNotAllowed,
    /// The head grew past [`MAX_REQUEST_HEAD`].
    HeaderTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Reads a request from the bytes received so far.
pub(crate) fn parse(received: &[u8]) -> Request {
    let Some(head_len) = head_end(received) else {
        return if received.len() >= MAX_REQUEST_HEAD {
            Request::Refused(Status::HeaderTooLarge)
        } else {
            Request::Incomplete
        };
    };
    let head = &received[..head_len];
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    let mut parts = first_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Refused(Status::BadRequest);
    };
    if !version.starts_with(b"HTTP/1.") {
        return Request::Refused(Status::BadRequest);
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Request::Refused(Status::MethodNotAllowed),
    };
    if path != b"/metrics" {
        return Request::Refused(Status::NotFound);
    }
    Request::Metrics { head_only }
}

/// Where the head ends (after its blank line), if it has. Bare `\n` line ends are accepted,
/// as most servers do, so `printf 'GET /metrics HTTP/1.0\n\n' | nc` works.
fn head_end(received: &[u8]) -> Option<usize> {
    let window = &received[..received.len().min(MAX_REQUEST_HEAD)];
    (0..window.len()).find_map(|i| {
        if window[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if window[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// A complete `200 OK` response carrying `body` (or only its headers).
pub(crate) fn ok(content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    response("200 OK", content_type, body, head_only)
}

/// A complete error response with a one-line plain-text body.
pub(crate) fn refused(status: Status) -> Vec<u8> {
    let body = match status {
        Status::NotFound => "not found: the metrics are at /metrics\n",
        _ => "metrics endpoint: GET /metrics\n",
    };
    response(status.line(), "text/plain; charset=utf-8", body, false)
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrape_request_asks_for_metrics() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n\
            User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4\r\n\r\n";
        assert_eq!(parse(request), Request::Metrics { head_only: false });
        assert_eq!(
            parse(b"HEAD /metrics?x=1 HTTP/1.0\n\n"),
            Request::Metrics { head_only: true }
        );
    }

    /// Every prefix of a request short of its blank line asks for more input.
    #[test]
    fn a_head_arriving_in_pieces_is_incomplete_until_its_blank_line() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..request.len() {
            assert_eq!(parse(&request[..cut]), Request::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn wrong_requests_are_refused_with_their_status() {
        let cases: [(&[u8], Status); 5] = [
            (b"POST /metrics HTTP/1.1\r\n\r\n", Status::MethodNotAllowed),
            (b"GET / HTTP/1.1\r\n\r\n", Status::NotFound),
            (b"GET /metrics\r\n\r\n", Status::BadRequest),
            (b"GET /metrics SPDY/3\r\n\r\n", Status::BadRequest),
            (b"\r\n\r\n", Status::BadRequest),
        ];
        for (request, status) in cases {
            assert_eq!(parse(request), Request::Refused(status), "{request:?}");
        }
    }

    #[test]
    fn a_head_past_the_bound_is_refused() {
        let mut endless = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        endless.resize(MAX_REQUEST_HEAD, b'a');
        assert_eq!(parse(&endless), Request::Refused(Status::HeaderTooLarge));
        assert_eq!(parse(&endless[..MAX_REQUEST_HEAD - 1]), Request::Incomplete);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let text = String::from_utf8(ok("text/plain", "a 1\n", false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 4\r\n") && text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(ok("text/plain", "a 1\n", true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let refused = String::from_utf8(refused(Status::NotFound)).unwrap();
        assert!(refused.starts_with("HTTP/1.1 404 Not Found\r\n"));
    }
}
