//! The JSON of events, items and content parts: pure writers over an [`Item`]
//! (and the vocabulary, for logprobs), with no state of their own. The event
//! engine ([`crate::events`]) decides what to send; this says how it is spelt.

use crate::item::{Item, Kind, Outcome, Status, TokenLogprob, WebAction};
use crate::json::{key, next_str_member, push_f64, push_opt_str, push_str, push_u64, str_member};
use crate::vocab::Vocab;

/// Writes one event as JSON, or as an SSE block when `sse`.
#[inline]
pub(crate) fn write_event(
    out: &mut String,
    kind: &str,
    sequence_number: u64,
    body: &str,
    sse: bool,
) {
    out.reserve(body.len() + 2 * kind.len() + 48);
    if sse {
        out.push_str("event: ");
        out.push_str(kind);
        out.push_str("\ndata: ");
    }
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push('"');
    if !body.is_empty() {
        out.push(',');
        out.push_str(body);
    }
    out.push_str(",\"sequence_number\":");
    push_u64(out, sequence_number);
    out.push('}');
    if sse {
        out.push_str("\n\n");
    }
}

/// The body of a content delta event: `delta`, `item_id`, a message's
/// `logprobs` (the delta's tokens, `lps`), `output_index`. Appends to `body`.
#[inline]
pub(crate) fn delta_body(
    body: &mut String,
    item: &Item,
    delta: &str,
    lps: &[(u32, TokenLogprob)],
    vocab: &Vocab,
) {
    if item.kind.has_part() {
        body.push_str("\"content_index\":0,");
    }
    str_member(body, "delta", delta);
    next_str_member(body, "item_id", &item.id);
    if let Kind::Message { .. } = item.kind {
        body.push(',');
        key(body, "logprobs");
        write_logprobs(vocab, lps, false, body);
    }
    body.push(',');
    key(body, "output_index");
    push_u64(body, item.output_index);
}

/// The body of the event carrying the item's whole text
/// ([`KindEvents::text_done`](crate::item::KindEvents)).
pub(crate) fn text_done_body(item: &Item, vocab: &Vocab) -> String {
    let (id, idx, text) = (&item.id, item.output_index, &item.text);
    let mut s = String::with_capacity(text.len() + 96);
    let field = match &item.kind {
        Kind::Reasoning | Kind::Message { .. } => {
            s.push_str("\"content_index\":0,");
            str_member(&mut s, "item_id", id);
            if let Kind::Message { .. } = item.kind {
                s.push(',');
                key(&mut s, "logprobs");
                write_logprobs(vocab, &item.logprobs, false, &mut s);
            }
            s.push(',');
            key(&mut s, "output_index");
            push_u64(&mut s, idx);
            next_str_member(&mut s, "text", text);
            return s;
        }
        Kind::CodeInterpreter { .. } => "code",
        _ => "arguments",
    };
    key(&mut s, field);
    push_str(&mut s, text);
    next_str_member(&mut s, "item_id", id);
    if let Kind::Function { name, .. } = &item.kind {
        next_str_member(&mut s, "name", name);
    }
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, idx);
    s
}

/// The empty content part of `content_part.added`.
pub(crate) fn empty_part(kind: &Kind) -> &'static str {
    match kind {
        Kind::Reasoning => "{\"type\":\"reasoning_text\",\"text\":\"\"}",
        _ => "{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}",
    }
}

/// The item's content part with its text (and a message's logprobs, with bytes).
pub(crate) fn part_json(item: &Item, vocab: &Vocab) -> String {
    let mut s = String::with_capacity(item.text.len() + 64);
    write_part(item, vocab, &mut s);
    s
}

fn write_part(item: &Item, vocab: &Vocab, s: &mut String) {
    match item.kind {
        Kind::Reasoning => {
            s.push_str("{\"type\":\"reasoning_text\",");
            key(s, "text");
            push_str(s, &item.text);
            s.push('}');
        }
        _ => {
            s.push_str("{\"type\":\"output_text\",");
            key(s, "text");
            push_str(s, &item.text);
            s.push_str(",\"annotations\":[],");
            key(s, "logprobs");
            write_logprobs(vocab, &item.logprobs, true, s);
            s.push('}');
        }
    }
}

/// The item as `output_item.added` (`added`: no content, no text, no result)
/// or `output_item.done` shows it.
pub(crate) fn item_json(item: &Item, status: Status, added: bool, vocab: &Vocab) -> String {
    let mut s = String::with_capacity(item.text.len() + 160);
    s.push('{');
    str_member(&mut s, "id", &item.id);
    s.push(',');
    let text = if added { "" } else { item.text.as_str() };
    match &item.kind {
        Kind::Reasoning | Kind::Message { .. } => {
            if let Kind::Message { .. } = item.kind {
                s.push_str("\"type\":\"message\",\"role\":\"assistant\",\"content\":");
            } else {
                s.push_str("\"type\":\"reasoning\",\"summary\":[],\"content\":");
            }
            if added {
                s.push_str("[]");
            } else {
                s.push('[');
                write_part(item, vocab, &mut s);
                s.push(']');
            }
            if let Kind::Message { phase: Some(p) } = item.kind {
                s.push_str(",\"phase\":\"");
                s.push_str(p);
                s.push('"');
            }
        }
        Kind::Function { name, call_id } => {
            s.push_str("\"type\":\"function_call\",");
            str_member(&mut s, "call_id", call_id);
            next_str_member(&mut s, "name", name);
            next_str_member(&mut s, "arguments", text);
        }
        Kind::Mcp { server_label, name } => {
            s.push_str("\"type\":\"mcp_call\",");
            str_member(&mut s, "server_label", server_label);
            next_str_member(&mut s, "name", name);
            next_str_member(&mut s, "arguments", text);
            match (&item.result, added) {
                (Some(Outcome::Output(o)), false) => {
                    next_str_member(&mut s, "output", o);
                }
                (Some(Outcome::Error(e)), false) => {
                    s.push_str(",\"error\":{\"type\":\"mcp_tool_execution_error\",\"content\":[{\"type\":\"text\",");
                    str_member(&mut s, "text", e);
                    s.push_str("}]}");
                }
                _ => {}
            }
        }
        Kind::CodeInterpreter { container_id } => {
            s.push_str("\"type\":\"code_interpreter_call\",");
            str_member(&mut s, "code", text);
            next_str_member(&mut s, "container_id", container_id);
            s.push(',');
            key(&mut s, "outputs");
            match (&item.result, added) {
                (Some(Outcome::Output(logs) | Outcome::Error(logs)), false) => {
                    s.push_str("[{\"type\":\"logs\",");
                    str_member(&mut s, "logs", logs);
                    s.push_str("}]");
                }
                _ => s.push_str("[]"),
            }
        }
        Kind::WebSearch(action) => {
            s.push_str("\"type\":\"web_search_call\",");
            key(&mut s, "action");
            write_web_action(action, &mut s);
        }
    }
    next_str_member(&mut s, "status", status.as_str());
    s.push('}');
    s
}

fn write_web_action(action: &WebAction, s: &mut String) {
    match action {
        WebAction::Search { query } => {
            s.push_str("{\"type\":\"search\"");
            if let Some(q) = query {
                s.push(',');
                key(s, "query");
                push_str(s, q);
            }
            s.push('}');
        }
        WebAction::Open { url } => {
            s.push_str("{\"type\":\"open_page\",");
            key(s, "url");
            push_opt_str(s, url.as_deref());
            s.push('}');
        }
        WebAction::Find { pattern, url } => {
            s.push_str("{\"type\":\"find_in_page\",");
            key(s, "pattern");
            push_str(s, pattern);
            s.push(',');
            key(s, "url");
            push_str(s, url);
            s.push('}');
        }
    }
}

/// An `mcp_list_tools` item (`tools`: the JSON array of the server's tools).
pub(crate) fn mcp_list_tools_json(id: &str, server_label: &str, tools: &str) -> String {
    let mut s = String::from("{");
    str_member(&mut s, "id", id);
    s.push_str(",\"type\":\"mcp_list_tools\",");
    str_member(&mut s, "server_label", server_label);
    s.push(',');
    key(&mut s, "tools");
    s.push_str(tools);
    s.push('}');
    s
}

fn token_text(vocab: &Vocab, token: u32) -> String {
    String::from_utf8_lossy(vocab.token_bytes(token).unwrap_or_default()).into_owned()
}

/// `{"token": …, ["bytes": …,] "logprob": …` (the object left open).
fn open_token_logprob(vocab: &Vocab, tok: u32, logprob: f64, with_bytes: bool, out: &mut String) {
    out.push('{');
    write_token(vocab, tok, with_bytes, out);
    out.push(',');
    key(out, "logprob");
    push_f64(out, logprob);
}

/// A JSON array of logprobs (`with_bytes`: each token's bytes too, as in parts).
pub(crate) fn write_logprobs(
    vocab: &Vocab,
    lps: &[(u32, TokenLogprob)],
    with_bytes: bool,
    out: &mut String,
) {
    out.push('[');
    for (i, (tok, lp)) in lps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        open_token_logprob(vocab, *tok, lp.logprob, with_bytes, out);
        out.push(',');
        key(out, "top_logprobs");
        out.push('[');
        for (j, (t, l)) in lp.top.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            open_token_logprob(vocab, *t, *l, with_bytes, out);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
}

fn write_token(vocab: &Vocab, tok: u32, with_bytes: bool, out: &mut String) {
    str_member(out, "token", &token_text(vocab, tok));
    if with_bytes {
        out.push(',');
        key(out, "bytes");
        out.push('[');
        for (i, b) in vocab
            .token_bytes(tok)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            push_u64(out, u64::from(*b));
        }
        out.push(']');
    }
}

/// `item`, `output_index`: the body of `output_item.added` / `.done`.
pub(crate) fn item_event(output_index: u64, item: &str) -> String {
    let mut s = String::with_capacity(item.len() + 32);
    key(&mut s, "item");
    s.push_str(item);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s
}

/// `item_id`, `output_index`: the body of a call's status events.
pub(crate) fn ref_event(item_id: &str, output_index: u64) -> String {
    let mut s = String::with_capacity(64);
    str_member(&mut s, "item_id", item_id);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s
}

/// The body of `content_part.added` / `.done`.
pub(crate) fn part_event(item_id: &str, output_index: u64, part: &str) -> String {
    let mut s = String::with_capacity(part.len() + 80);
    s.push_str("\"content_index\":0,");
    str_member(&mut s, "item_id", item_id);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s.push(',');
    key(&mut s, "part");
    s.push_str(part);
    s
}
