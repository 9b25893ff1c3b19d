//! Harmony header grammar: the text between `<|start|>` and `<|message|>`.
//!
//! `{role}[ to={recipient}]<|channel|>{channel}[ to={recipient}][ <|constrain|>{type}|{type}]`
//!
//! [`parse_strict`] follows openai-harmony 0.0.8's rules exactly (what it
//! accepts, what it returns, where it fails). [`parse_lenient`] never fails:
//! it takes the role, channel, recipient and content type it can find and
//! reports the words it could not place. [`fix_quirks`] applies the two
//! corrections lenient mode makes even to headers strict parsing accepts.

use crate::error::ParseErrorKind;
use crate::message::{Header, Role};

pub(crate) const CHANNEL_MARKER: &str = "<|channel|>";
pub(crate) const CONSTRAIN_MARKER: &str = "<|constrain|>";
/// The channels gpt-oss writes: reasoning, tool calls and preambles, the answer.
pub const KNOWN_CHANNELS: [&str; 3] = ["analysis", "commentary", "final"];

/// A header that strict parsing rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderError {
    pub kind: ParseErrorKind,
    pub message: String,
}

fn fail<T>(kind: ParseErrorKind, message: String) -> Result<T, HeaderError> {
    Err(HeaderError { kind, message })
}

/// Removes the first `<|channel|>NAME` from the header text.
/// Returns `(channel, rest)`; the channel name ends at whitespace or `<`.
fn take_channel(text: &str) -> (Option<&str>, String) {
    match text.find(CHANNEL_MARKER) {
        None => (None, text.to_string()),
        Some(idx) => {
            let after = &text[idx + CHANNEL_MARKER.len()..];
            let end = after
                .find(|c: char| c.is_whitespace() || c == '<')
                .unwrap_or(after.len());
            let mut rest = String::with_capacity(text.len());
            rest.push_str(&text[..idx]);
            rest.push_str(&after[end..]);
            (Some(&after[..end]), rest)
        }
    }
}

/// Parses a header the way openai-harmony 0.0.8 does.
///
/// With `parse_recipient_and_type = false` (a header closed by a stop token
/// instead of `<|message|>`), the words after role and channel are returned
/// as content instead of being read as recipient and content type.
/// Returns the header and the leftover words joined by single spaces.
pub(crate) fn parse_strict(
    text: &str,
    role: Option<Role>,
    parse_recipient_and_type: bool,
) -> Result<(Header, Option<String>), HeaderError> {
    let (channel, rest) = take_channel(text);
    if channel == Some("") {
        return fail(
            ParseErrorKind::EmptyChannel,
            "channel marker present but no channel value found in header".into(),
        );
    }
    let mut rest = rest.trim().to_string();
    if rest.contains(CONSTRAIN_MARKER) {
        rest = rest
            .replace(CONSTRAIN_MARKER, " <|constrain|>")
            .trim()
            .to_string();
    }
    let mut parts: Vec<&str> = rest.split_ascii_whitespace().collect();

    let mut role_word: Option<&str> = None;
    let role = match role {
        Some(r) => r,
        None => {
            let Some(&first) = parts.first() else {
                return fail(
                    ParseErrorKind::MissingRole,
                    "message header did not contain a role".into(),
                );
            };
            role_word = Some(first);
            match Role::parse(first) {
                Some(r) => r,
                None if parts.len() > 1 || first.starts_with("to=") => {
                    parts.remove(0);
                    Role::Tool
                }
                None => {
                    return fail(
                        ParseErrorKind::UnknownRole,
                        format!("Unknown role: {first}"),
                    );
                }
            }
        }
    };
    if parts.first() == Some(&role.as_str()) {
        parts.remove(0);
    }

    let mut recipient = None;
    let mut content_type = None;
    if parse_recipient_and_type {
        let num_parts = parts.len();
        if let Some(last) = parts.pop() {
            if let Some(r) = last.strip_prefix("to=") {
                recipient = Some(r.to_string());
            } else if num_parts == 1 {
                recipient = Some(last.to_string());
            } else {
                content_type = Some(last.to_string());
                if let Some(raw) = parts.pop() {
                    recipient = Some(raw.strip_prefix("to=").unwrap_or(raw).to_string());
                }
            }
        }
    }
    let leftover = (!parts.is_empty()).then(|| parts.join(" "));
    let name = if role == Role::Tool {
        role_word.map(str::to_string)
    } else {
        None
    };
    Ok((
        Header {
            role,
            name,
            channel: channel.map(str::to_string),
            recipient,
            content_type,
        },
        leftover,
    ))
}

/// Parses a header strict parsing rejected, taking what it can.
///
/// Returns the header and the words that found no place (for the recovery record).
pub(crate) fn parse_lenient(
    text: &str,
    role: Option<Role>,
    default_role: Role,
) -> (Header, String) {
    let mut junk: Vec<String> = Vec::new();
    let mut channel: Option<String> = None;
    let mut rest = text.to_string();
    while let (Some(ch), r) = take_channel(&rest) {
        if channel.is_none() && !ch.is_empty() {
            channel = Some(ch.to_string());
        } else {
            junk.push(format!("{CHANNEL_MARKER}{ch}"));
        }
        rest = r;
    }
    let spaced = rest.replace(CONSTRAIN_MARKER, " <|constrain|> ");
    let mut parts: Vec<&str> = spaced.split_ascii_whitespace().collect();

    let role = match role {
        Some(r) => {
            if parts.first() == Some(&r.as_str()) {
                parts.remove(0);
            }
            Header::new(r)
        }
        None => match parts.first().copied() {
            Some(first) if Role::parse(first).is_some() => {
                parts.remove(0);
                Header::new(Role::parse(first).unwrap_or(default_role))
            }
            Some(first) if !first.starts_with("to=") && first != CONSTRAIN_MARKER => {
                parts.remove(0);
                Header {
                    name: Some(first.to_string()),
                    ..Header::new(Role::Tool)
                }
            }
            _ => Header::new(default_role),
        },
    };
    let mut header = Header { channel, ..role };

    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        if let Some(r) = part.strip_prefix("to=") {
            if header.recipient.is_none() {
                if r.is_empty() && i + 1 < parts.len() {
                    i += 1;
                    header.recipient = Some(parts[i].to_string());
                } else if !r.is_empty() {
                    header.recipient = Some(r.to_string());
                } else {
                    junk.push(part.to_string());
                }
            } else {
                junk.push(part.to_string());
            }
        } else if part == CONSTRAIN_MARKER {
            let next = parts
                .get(i + 1)
                .filter(|p| !p.starts_with("to=") && **p != CONSTRAIN_MARKER);
            match (next, header.content_type.is_none()) {
                (Some(ty), true) => {
                    header.content_type = Some(format!("{CONSTRAIN_MARKER}{ty}"));
                    i += 1;
                }
                _ => junk.push(part.to_string()),
            }
        } else {
            junk.push(part.to_string());
        }
        i += 1;
    }
    (header, junk.join(" "))
}

/// Where the content starts in a header that a stop token, `<|start|>` or the end
/// of the stream closed before `<|message|>` (the model wrote its text into the
/// header: `assistant<|channel|>final {"answer": "hi"}`).
///
/// The header part is, in any order and each at most once: the role word (when
/// the header began with `<|start|>`; optional when the prompt gave the role),
/// `<|channel|>NAME`, `to=RECIPIENT` and `<|constrain|>TYPE`. The content is what
/// follows, without the whitespace that separates it. Returns `None` when the
/// header part has neither a channel nor a recipient (nothing says the rest is a
/// message) or when no text follows it.
pub(crate) fn split_unterminated(text: &str, role: Option<Role>) -> Option<usize> {
    fn word_end(s: &str) -> usize {
        s.find(|c: char| c.is_whitespace() || c == '<')
            .unwrap_or(s.len())
    }
    let skip_ws = |pos: usize| pos + (text[pos..].len() - text[pos..].trim_start().len());
    let mut pos = skip_ws(0);
    let first = &text[pos..pos + word_end(&text[pos..])];
    match (role, Role::parse(first)) {
        (Some(r), _) if first == r.as_str() => pos += first.len(),
        (None, Some(_)) => pos += first.len(),
        (None, None) if !first.starts_with("to=") => return None,
        _ => {}
    }
    let (mut channel, mut recipient, mut constrain) = (false, false, false);
    loop {
        pos = skip_ws(pos);
        let rest = &text[pos..];
        if !channel && rest.starts_with(CHANNEL_MARKER) {
            let after = &rest[CHANNEL_MARKER.len()..];
            channel = true;
            pos += CHANNEL_MARKER.len() + word_end(after);
        } else if !recipient && rest.starts_with("to=") {
            recipient = true;
            pos += word_end(rest);
        } else if !constrain && rest.starts_with(CONSTRAIN_MARKER) {
            // A content type is one word of letters, digits and `-_.+/`; text
            // glued to it (`<|constrain|>json{"a": 1}`) is content.
            let after = &rest[CONSTRAIN_MARKER.len()..];
            let ty = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.+/".contains(c)))
                .unwrap_or(after.len());
            constrain = true;
            pos += CONSTRAIN_MARKER.len() + ty;
        } else {
            break;
        }
    }
    ((channel || recipient) && pos < text.len()).then_some(pos)
}

/// What [`fix_quirks`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct QuirkFixes {
    /// The content type that had been read as recipient.
    pub constrain_as_recipient: Option<String>,
    /// `(before, after)` of a normalized channel.
    pub channel: Option<(String, String)>,
}

/// Lenient mode's corrections to an accepted header.
pub(crate) fn fix_quirks(header: &mut Header) -> QuirkFixes {
    let mut fixes = QuirkFixes::default();
    if header.content_type.is_none()
        && header
            .recipient
            .as_deref()
            .is_some_and(|r| r.starts_with(CONSTRAIN_MARKER))
    {
        let ct = header.recipient.take();
        fixes.constrain_as_recipient.clone_from(&ct);
        header.content_type = ct;
    }
    if let Some(ch) = header.channel.as_deref() {
        if !KNOWN_CHANNELS.contains(&ch) {
            let trimmed = ch.trim_end_matches(|c: char| !c.is_alphanumeric());
            if let Some(known) = KNOWN_CHANNELS.iter().find(|k| **k == trimmed) {
                fixes.channel = Some((ch.to_string(), (*known).to_string()));
                header.channel = Some((*known).to_string());
            }
        }
    }
    fixes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(text: &str, role: Option<Role>) -> Result<Header, ParseErrorKind> {
        match parse_strict(text, role, true) {
            Ok((h, None)) => Ok(h),
            Ok((_, Some(_))) => Err(ParseErrorKind::TrailingHeaderText),
            Err(e) => Err(e.kind),
        }
    }

    #[test]
    fn recipient_before_or_after_channel() {
        let a = strict(
            " to=functions.f<|channel|>commentary <|constrain|>json",
            Some(Role::Assistant),
        )
        .unwrap();
        let b = strict(
            "<|channel|>commentary to=functions.f <|constrain|>json",
            Some(Role::Assistant),
        )
        .unwrap();
        let c = strict(
            "<|channel|>commentary to=functions.f<|constrain|>json",
            Some(Role::Assistant),
        )
        .unwrap();
        for h in [&a, &b, &c] {
            assert_eq!(h.channel.as_deref(), Some("commentary"));
            assert_eq!(h.recipient.as_deref(), Some("functions.f"));
            assert_eq!(h.content_type.as_deref(), Some("<|constrain|>json"));
        }
    }

    #[test]
    fn role_from_text_and_tool_names() {
        let h = strict("assistant<|channel|>final", None).unwrap();
        assert_eq!(
            (h.role, h.channel.as_deref()),
            (Role::Assistant, Some("final"))
        );
        let t = strict(
            "functions.get_weather to=assistant<|channel|>commentary",
            None,
        )
        .unwrap();
        assert_eq!(t.role, Role::Tool);
        assert_eq!(t.name.as_deref(), Some("functions.get_weather"));
        assert_eq!(t.recipient.as_deref(), Some("assistant"));
        assert_eq!(
            strict("bogus<|channel|>final", None),
            Err(ParseErrorKind::UnknownRole)
        );
        assert_eq!(
            strict("<|channel|>final", None),
            Err(ParseErrorKind::MissingRole)
        );
    }

    #[test]
    fn strict_failures() {
        assert_eq!(
            strict("<|channel|><|constrain|>json", Some(Role::Assistant)),
            Err(ParseErrorKind::EmptyChannel)
        );
        assert_eq!(
            strict(
                "<|channel|>commentary to=f <|constrain|> json",
                Some(Role::Assistant)
            ),
            Err(ParseErrorKind::TrailingHeaderText)
        );
    }

    #[test]
    fn constrain_after_final_is_a_recipient_in_strict_and_fixed_by_quirks() {
        let mut h = strict("<|channel|>final <|constrain|>json", Some(Role::Assistant)).unwrap();
        assert_eq!(h.recipient.as_deref(), Some("<|constrain|>json"));
        let fixes = fix_quirks(&mut h);
        assert_eq!(h.recipient, None);
        assert_eq!(h.content_type.as_deref(), Some("<|constrain|>json"));
        assert!(fixes.constrain_as_recipient.is_some());
    }

    #[test]
    fn channel_normalization() {
        let mut h = strict("<|channel|>commentary?", Some(Role::Assistant)).unwrap();
        fix_quirks(&mut h);
        assert_eq!(h.channel.as_deref(), Some("commentary"));
        let mut odd = strict("<|channel|>notes", Some(Role::Assistant)).unwrap();
        fix_quirks(&mut odd);
        assert_eq!(odd.channel.as_deref(), Some("notes"));
    }

    #[test]
    fn unterminated_header_splits_at_the_text_after_its_parts() {
        fn split(t: &str, r: Option<Role>) -> Option<&str> {
            split_unterminated(t, r).map(|i| &t[i..])
        }
        let a = Some(Role::Assistant);
        assert_eq!(
            split("assistant<|channel|>final {\"answer\": \"hi\"}", None),
            Some("{\"answer\": \"hi\"}")
        );
        assert_eq!(
            split("<|channel|>final  Hello  there ", a),
            Some("Hello  there ")
        );
        assert_eq!(
            split(
                "<|channel|>commentary to=functions.f <|constrain|>json{\"x\":1}",
                a
            ),
            Some("{\"x\":1}")
        );
        assert_eq!(
            split("to=python<|channel|>analysis print(1)", a),
            Some("print(1)")
        );
        // No channel or recipient, nothing after the parts, an unknown role word.
        assert_eq!(split("Hello world", a), None);
        assert_eq!(split("assistant<|channel|>final ", None), None);
        assert_eq!(split("<|channel|>fi", a), None);
        assert_eq!(split("robot<|channel|>final hi", None), None);
    }

    #[test]
    fn lenient_takes_what_it_can() {
        let (h, junk) = parse_lenient(
            "<|channel|>commentary to=functions.f <|constrain|> json extra",
            Some(Role::Assistant),
            Role::Assistant,
        );
        assert_eq!(h.recipient.as_deref(), Some("functions.f"));
        assert_eq!(h.content_type.as_deref(), Some("<|constrain|>json"));
        assert_eq!(junk, "extra");
        let (h, junk) = parse_lenient("<|channel|>", None, Role::Assistant);
        assert_eq!(
            (h.role, h.channel, junk.as_str()),
            (Role::Assistant, None, "<|channel|>")
        );
    }
}
