//! RFC 8288 `Link` headers: every link of every field, with its parameters,
//! and targets resolved against the request URL.
//!
//! A target is written between `<` and `>` and may hold commas and
//! semicolons (`<https://api/x?sort=team,id>`); parameters may be tokens or
//! quoted strings (`rel="next last"`, `title="a, b"`); a `rel` lists
//! relation types separated by spaces, compared case-insensitively.

/// One link: its target and parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target as written (see [`resolve`] for relative ones).
    pub target: String,
    /// Parameters in order, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Link {
    /// Whether `rel` lists relation type `relation`.
    pub fn has_rel(&self, relation: &str) -> bool {
        self.params
            .iter()
            .filter(|(name, _)| name == "rel")
            .flat_map(|(_, value)| value.split_ascii_whitespace())
            .any(|r| r.eq_ignore_ascii_case(relation))
    }
}

/// Every link in the `Link` field values `fields`.
///
/// # Errors
///
/// A message naming what is malformed; a header that cannot be read is not
/// taken as "no links".
pub fn parse(fields: &[&str]) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for field in fields {
        let mut rest = field.trim_start();
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            let inner = rest
                .strip_prefix('<')
                .ok_or_else(|| format!("a link target must start with `<`: `{rest}`"))?;
            let end = inner
                .find('>')
                .ok_or_else(|| format!("a link target is not closed with `>`: `{rest}`"))?;
            let target = inner[..end].trim().to_string();
            rest = &inner[end + 1..];
            let mut params = Vec::new();
            loop {
                rest = rest.trim_start();
                let Some(after) = rest.strip_prefix(';') else {
                    break;
                };
                let (param, remaining) = parameter(after.trim_start())?;
                params.extend(param);
                rest = remaining;
            }
            rest = rest.trim_start();
            if !(rest.is_empty() || rest.starts_with(',')) {
                return Err(format!("unexpected text after a link: `{rest}`"));
            }
            links.push(Link { target, params });
        }
    }
    Ok(links)
}

/// A parameter's lower-cased name and unquoted value.
type Param = (String, String);

/// One `name[=value]` parameter and the text after it.
fn parameter(text: &str) -> Result<(Option<Param>, &str), String> {
    let name_end = text
        .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
        .unwrap_or(text.len());
    let name = text[..name_end].to_ascii_lowercase();
    let rest = text[name_end..].trim_start();
    let Some(value_text) = rest.strip_prefix('=') else {
        return Ok(((!name.is_empty()).then(|| (name, String::new())), rest));
    };
    let value_text = value_text.trim_start();
    if let Some(quoted) = value_text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return Ok((Some((name, value)), &quoted[i + 1..])),
                other => value.push(other),
            }
        }
        return Err(format!("an unterminated quoted value for `{name}`"));
    }
    let end = value_text.find([';', ',']).unwrap_or(value_text.len());
    Ok((
        Some((name, value_text[..end].trim().to_string())),
        &value_text[end..],
    ))
}

/// `target` resolved against the absolute URL `base` (RFC 3986 section 5.2).
pub fn resolve(base: &str, target: &str) -> String {
    if target.contains("://") {
        return target.to_string();
    }
    let (scheme, after_scheme) = base.split_once("://").unwrap_or(("https", base));
    if let Some(network) = target.strip_prefix("//") {
        return format!("{scheme}://{network}");
    }
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let origin = format!("{scheme}://{}", &after_scheme[..authority_end]);
    let base_path_query = &after_scheme[authority_end..];
    let base_path = base_path_query
        .split(['?', '#'])
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    if target.is_empty() {
        return base.split('#').next().unwrap_or(base).to_string();
    }
    if target.starts_with('?') {
        return format!("{origin}{base_path}{target}");
    }
    if target.starts_with('#') {
        return format!("{}{target}", base.split('#').next().unwrap_or(base));
    }
    let merged = if target.starts_with('/') {
        target.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{target}")
    };
    let (path, tail) = match merged.find(['?', '#']) {
        Some(at) => (&merged[..at], &merged[at..]),
        None => (merged.as_str(), ""),
    };
    format!("{origin}{}{tail}", remove_dot_segments(path))
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(fields: &[&str]) -> Option<String> {
        parse(fields)
            .unwrap()
            .into_iter()
            .find(|l| l.has_rel("next"))
            .map(|l| l.target)
    }

    #[test]
    fn commas_and_semicolons_inside_a_target_stay_in_it() {
        let header = "<http://h/items?_sort=team,id&_page=2;x>; rel=\"next\", <http://h/items?_sort=team,id&_page=9>; rel=\"last\"";
        assert_eq!(
            next(&[header]).as_deref(),
            Some("http://h/items?_sort=team,id&_page=2;x")
        );
    }

    #[test]
    fn rel_may_list_several_types_be_unquoted_or_in_another_field() {
        assert_eq!(next(&["<a>; rel=\"next last\""]).as_deref(), Some("a"));
        assert_eq!(next(&["<a>; REL=Next"]).as_deref(), Some("a"));
        assert_eq!(
            next(&["<p>; rel=prev", "<n>; rel=next"]).as_deref(),
            Some("n")
        );
        assert_eq!(
            next(&["<t>; title=\"a, b; c\"; rel=\"next\""]).as_deref(),
            Some("t")
        );
        assert_eq!(next(&["<p>; rel=\"prev\""]), None);
    }

    #[test]
    fn malformed_links_are_errors_not_an_empty_list() {
        for bad in [
            "http://h/x; rel=next",
            "<http://h/x; rel=next",
            "<a>; rel=\"next",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_targets_resolve_against_the_request_url() {
        let base = "https://api.example.com/v1/users?page=1";
        for (target, want) in [
            ("/users?page=2", "https://api.example.com/users?page=2"),
            ("users?page=2", "https://api.example.com/v1/users?page=2"),
            ("?page=2", "https://api.example.com/v1/users?page=2"),
            ("../v2/users", "https://api.example.com/v2/users"),
            ("//other.example.com/x", "https://other.example.com/x"),
            ("http://elsewhere/x", "http://elsewhere/x"),
        ] {
            assert_eq!(resolve(base, target), want, "{target}");
        }
    }
}
