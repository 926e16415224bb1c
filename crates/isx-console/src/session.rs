//! Who may drive the console: the session token, the Host and the Origin.
//!
//! The console listens on loopback, where every local user and every page
//! open in the browser can reach it. So, as Jupyter does, it makes a random
//! token at start and prints it in the URL:
//!
//! - a GET with `?token=T` sets a cookie (HttpOnly, SameSite=Strict, named
//!   after the port, since cookies ignore ports) and redirects to the same
//!   page without the token, so it leaves the address bar and the history;
//! - every other GET needs that cookie;
//! - every POST (the requests that call the gateway or change the
//!   console's state) needs the cookie, an `Origin` that is the console's
//!   own, and the token again in the form (`_token`) or in `x-isx-token`;
//! - every request needs a `Host` that is the console's own (a DNS
//!   rebinding page names its own host);
//! - `/static/` (the stylesheet and the script, the same for everyone)
//!   needs only the Host.
//!
//! The checks are pure functions of the request head, tested here; the
//! middleware in `lib.rs` applies them.

use http::HeaderMap;
use http::header::{COOKIE, HOST, ORIGIN};

/// A session: the token and what the console answers to.
#[derive(Debug, Clone)]
pub struct Session {
    token: String,
    cookie: String,
    hosts: Vec<String>,
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The Host header is not the console's.
    #[error(
        "the request names host {0:?}, not this console's; open the URL that `isx console` printed (a page on another site cannot drive the console)"
    )]
    Host(String),
    /// No valid session cookie or token.
    #[error(
        "this page needs the console's session: open the URL that `isx console` printed, with its ?token=..., in this browser"
    )]
    NoSession,
    /// A state-changing request without the console's Origin.
    #[error(
        "a form of this console must send it; this one came from {0} (the console accepts changes only from its own pages)"
    )]
    Origin(String),
    /// A state-changing request without the token in the form or header.
    #[error("the form carries no valid session token (_token): reload the page and submit it again")]
    FormToken,
}

/// What a GET with a token in its query should get: a redirect that sets the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enter {
    /// The `Set-Cookie` value.
    pub set_cookie: String,
    /// The same path and query without the token.
    pub location: String,
}

impl Session {
    /// A session with `token`, answering to `hosts` (each `host:port`).
    pub fn new(token: String, port: u16, hosts: Vec<String>) -> Self {
        Self { token, cookie: format!("isx_console_{port}"), hosts }
    }

    /// A fresh random token: 32 bytes from the system's generator, in hex.
    pub fn random_token() -> String {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system random generator works");
        hex::encode(bytes)
    }

    /// The token (printed once in the URL, and put in every form).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The hosts (`host:port`) the console answers to.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    fn same(&self, given: &str) -> bool {
        // Constant time, so the token cannot be guessed byte by byte.
        let (a, b) = (given.as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Checks the Host header.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err(Refused::Host(host.to_owned()))
        }
    }

    /// True if the request carries the session cookie.
    pub fn has_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && self.same(value))
    }

    /// For a GET: `Ok(None)` to serve it, `Ok(Some(enter))` to redirect
    /// with the cookie (the query carries the token), or why not.
    pub fn check_get(&self, headers: &HeaderMap, path: &str, query: Option<&str>) -> Result<Option<Enter>, Refused> {
        self.check_host(headers)?;
        let pairs: Vec<(String, String)> = query
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some((_, given)) = pairs.iter().find(|(k, _)| k == "token") {
            if !self.same(given) {
                return Err(Refused::NoSession);
            }
            let rest: Vec<String> =
                pairs.iter().filter(|(k, _)| k != "token").map(|(k, v)| format!("{k}={v}")).collect();
            let location = if rest.is_empty() { path.to_owned() } else { format!("{path}?{}", rest.join("&")) };
            let set_cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", self.cookie, self.token);
            return Ok(Some(Enter { set_cookie, location }));
        }
        if self.has_cookie(headers) { Ok(None) } else { Err(Refused::NoSession) }
    }

    /// For a POST, before its body is read: the Host, the cookie and the Origin.
    pub fn check_post_head(&self, headers: &HeaderMap) -> Result<(), Refused> {
        self.check_host(headers)?;
        if !self.has_cookie(headers) {
            return Err(Refused::NoSession);
        }
        let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
        match origin {
            Some(o) if self.hosts.iter().any(|h| o.eq_ignore_ascii_case(&format!("http://{h}"))) => Ok(()),
            Some(o) => Err(Refused::Origin(format!("origin {o:?}"))),
            None => Err(Refused::Origin("no Origin header".into())),
        }
    }

    /// For a POST: the token in the `x-isx-token` header or the form's
    /// `_token` field (`form` is the urlencoded body, if it is one).
    pub fn check_post_token(&self, headers: &HeaderMap, form: Option<&[(String, String)]>) -> Result<(), Refused> {
        if let Some(h) = headers.get("x-isx-token").and_then(|h| h.to_str().ok()) {
            return if self.same(h) { Ok(()) } else { Err(Refused::FormToken) };
        }
        match form.and_then(|f| f.iter().find(|(k, _)| k == "_token")) {
            Some((_, v)) if self.same(v) => Ok(()),
            _ => Err(Refused::FormToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const T: &str = "a1b2c3";

    fn session() -> Session {
        Session::new(T.into(), 8080, vec!["127.0.0.1:8080".into(), "localhost:8080".into()])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_get_with_the_token_sets_the_cookie_and_drops_the_token_from_the_url() {
        let s = session();
        let enter = s.check_get(&headers(&[("host", "127.0.0.1:8080")]), "/search", Some("token=a1b2c3&x=1")).unwrap();
        let enter = enter.expect("a redirect");
        assert_eq!(enter.location, "/search?x=1");
        assert!(enter.set_cookie.starts_with("isx_console_8080=a1b2c3;"));
        assert!(enter.set_cookie.contains("HttpOnly") && enter.set_cookie.contains("SameSite=Strict"));
    }

    #[test]
    fn a_get_needs_the_cookie_or_the_right_token() {
        let s = session();
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(s.check_get(&headers(&[host]), "/", None), Err(Refused::NoSession));
        assert_eq!(s.check_get(&headers(&[host]), "/", Some("token=wrong")), Err(Refused::NoSession));
        assert_eq!(
            s.check_get(&headers(&[host, ("cookie", "isx_console_8080=wrong")]), "/", None),
            Err(Refused::NoSession)
        );
        // Another console's cookie (another port) is not this one's.
        assert_eq!(
            s.check_get(&headers(&[host, ("cookie", "isx_console_9090=a1b2c3")]), "/", None),
            Err(Refused::NoSession)
        );
        assert_eq!(s.check_get(&headers(&[host, ("cookie", "other=1; isx_console_8080=a1b2c3")]), "/", None), Ok(None));
    }

    #[test]
    fn a_foreign_host_is_refused_even_with_the_cookie() {
        let s = session();
        let h = headers(&[("host", "evil.example:8080"), ("cookie", "isx_console_8080=a1b2c3")]);
        assert_eq!(s.check_get(&h, "/", None), Err(Refused::Host("evil.example:8080".into())));
        assert!(s.check_host(&headers(&[("host", "LOCALHOST:8080")])).is_ok());
    }

    #[test]
    fn a_post_needs_the_cookie_its_own_origin_and_the_form_token() {
        let s = session();
        let ok =
            [("host", "127.0.0.1:8080"), ("cookie", "isx_console_8080=a1b2c3"), ("origin", "http://127.0.0.1:8080")];
        assert_eq!(s.check_post_head(&headers(&ok)), Ok(()));
        let foreign = [ok[0], ok[1], ("origin", "http://evil.example")];
        assert!(matches!(s.check_post_head(&headers(&foreign)), Err(Refused::Origin(_))));
        assert!(matches!(s.check_post_head(&headers(&ok[..2])), Err(Refused::Origin(_))));
        assert_eq!(s.check_post_head(&headers(&[ok[0], ok[2]])), Err(Refused::NoSession));

        let form = |v: &str| vec![("_token".to_owned(), v.to_owned()), ("q".to_owned(), "1".to_owned())];
        assert_eq!(s.check_post_token(&HeaderMap::new(), Some(&form(T))), Ok(()));
        assert_eq!(s.check_post_token(&HeaderMap::new(), Some(&form("nope"))), Err(Refused::FormToken));
        assert_eq!(s.check_post_token(&HeaderMap::new(), None), Err(Refused::FormToken));
        assert_eq!(s.check_post_token(&headers(&[("x-isx-token", T)]), None), Ok(()));
        assert_eq!(s.check_post_token(&headers(&[("x-isx-token", "x")]), Some(&form(T))), Err(Refused::FormToken));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (Session::random_token(), Session::random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }
}
