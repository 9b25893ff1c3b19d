//! One output item of a response: its kind with the kind's own data (a function
//! call's `call_id`, a code interpreter call's container, a browser call's
//! action), its id, its text, its logprobs, the result of a server-run call, and
//! its [`Status`]. What each kind does (id prefix, event names, whether the
//! server runs it) is said once, in the methods of [`Kind`].

use crate::router::{BrowserAction, Route, Tool};

/// The status of an item, or of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl Status {
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
        }
    }
}

/// The log probability of one sampled token, with its top alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Log probability of the sampled token.
    pub logprob: f64,
    /// `(token id, log probability)` of the top alternatives.
    pub top: Vec<(u32, f64)>,
}

/// A browser call's action as the `web_search_call` item shows it. Its fields
/// are filled in when the call's message completes ([`Kind::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WebAction {
    /// `{"type":"search","query":...}` (no `query` when the arguments have none).
    Search { query: Option<String> },
    /// `{"type":"open_page","url":...}` (`null` when the arguments have none).
    Open { url: Option<String> },
    /// `{"type":"find_in_page","pattern":...,"url":...}`: the url is the call's,
    /// else the page the last `open` opened, else empty.
    Find { pattern: String, url: String },
}

impl WebAction {
    fn new(action: BrowserAction) -> Self {
        match action {
            BrowserAction::Search => Self::Search { query: None },
            BrowserAction::Open => Self::Open { url: None },
            BrowserAction::Find => Self::Find {
                pattern: String::new(),
                url: String::new(),
            },
        }
    }

    /// The browser tool this action came from.
    pub(crate) fn browser_action(&self) -> BrowserAction {
        match self {
            Self::Search { .. } => BrowserAction::Search,
            Self::Open { .. } => BrowserAction::Open,
            Self::Find { .. } => BrowserAction::Find,
        }
    }
}

/// The item kind, with the data only that kind has.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `reasoning`
    Reasoning,
    /// `message`, with its phase when the channel is known.
    Message { phase: Option<&'static str> },
    /// `function_call`
    Function { name: String, call_id: String },
    /// `mcp_call`
    Mcp { server_label: String, name: String },
    /// `code_interpreter_call`
    CodeInterpreter { container_id: String },
    /// `web_search_call`
    WebSearch(WebAction),
}

/// The events that differ by kind of item (`None`: that kind sends none).
pub(crate) struct KindEvents {
    /// One content delta (a browser call sends none).
    pub(crate) delta: Option<&'static str>,
    /// The whole text, when the message completes.
    pub(crate) text_done: Option<&'static str>,
    /// A server-run call's `in_progress`, right after `output_item.added`.
    pub(crate) in_progress: Option<&'static str>,
    /// A completed call now runs (none for MCP).
    pub(crate) running: Option<&'static str>,
    /// A server-run call got its output.
    pub(crate) completed: Option<&'static str>,
    /// A call failed or was skipped: only MCP has one; the others fail
    /// silently or close `incomplete`.
    pub(crate) failed: Option<&'static str>,
}

/// [`KindEvents`] of reasoning, message, function, MCP, code interpreter and
/// web search, in that order ([`Kind::events`]).
const KIND_EVENTS: [KindEvents; 6] = [
    KindEvents {
        delta: Some("response.reasoning_text.delta"),
        text_done: Some("response.reasoning_text.done"),
        in_progress: None,
        running: None,
        completed: None,
        failed: None,
    },
    KindEvents {
        delta: Some("response.output_text.delta"),
        text_done: Some("response.output_text.done"),
        in_progress: None,
        running: None,
        completed: None,
        failed: None,
    },
    KindEvents {
        delta: Some("response.function_call_arguments.delta"),
        text_done: Some("response.function_call_arguments.done"),
        in_progress: None,
        running: None,
        completed: None,
        failed: None,
    },
    KindEvents {
        delta: Some("response.mcp_call_arguments.delta"),
        text_done: Some("response.mcp_call_arguments.done"),
        in_progress: Some("response.mcp_call.in_progress"),
        running: None,
        completed: Some("response.mcp_call.completed"),
        failed: Some("response.mcp_call.failed"),
    },
    KindEvents {
        delta: Some("response.code_interpreter_call_code.delta"),
        text_done: Some("response.code_interpreter_call_code.done"),
        in_progress: Some("response.code_interpreter_call.in_progress"),
        running: Some("response.code_interpreter_call.interpreting"),
        completed: Some("response.code_interpreter_call.completed"),
        failed: None,
    },
    KindEvents {
        delta: None,
        text_done: None,
        in_progress: Some("response.web_search_call.in_progress"),
        running: Some("response.web_search_call.searching"),
        completed: Some("response.web_search_call.completed"),
        failed: None,
    },
];

impl Kind {
    /// Whether the server runs the call (its result comes with `tool_output`).
    pub(crate) fn is_server_run(&self) -> bool {
        matches!(
            self,
            Self::Mcp { .. } | Self::CodeInterpreter { .. } | Self::WebSearch(_)
        )
    }

    /// Whether the item has one content part (reasoning text, output text).
    pub(crate) fn has_part(&self) -> bool {
        matches!(self, Self::Reasoning | Self::Message { .. })
    }

    /// Whether `output_item.added` is sent when the header completes. A browser
    /// call's is sent when its message completes: its action is known only then.
    pub(crate) fn added_at_header(&self) -> bool {
        !matches!(self, Self::WebSearch(_))
    }

    /// The events this kind of item sends, from [`KIND_EVENTS`].
    #[inline]
    pub(crate) fn events(&self) -> &'static KindEvents {
        let i = match self {
            Self::Reasoning => 0,
            Self::Message { .. } => 1,
            Self::Function { .. } => 2,
            Self::Mcp { .. } => 3,
            Self::CodeInterpreter { .. } => 4,
            Self::WebSearch(_) => 5,
        };
        &KIND_EVENTS[i]
    }

    /// A browser call: reads its action from the completed arguments (`last_url`
    /// is the page the last `open` went to, updated here by an `open`).
    pub(crate) fn resolve(&mut self, args: &str, last_url: &mut Option<String>) {
        let Self::WebSearch(action) = self else {
            return;
        };
        let parsed: Option<serde_json::Value> = serde_json::from_str(args).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        *action = match action.browser_action() {
            BrowserAction::Search => WebAction::Search {
                query: field("query"),
            },
            BrowserAction::Open => {
                let url = field("url").or_else(|| field("id"));
                if url.is_some() {
                    last_url.clone_from(&url);
                }
                WebAction::Open { url }
            }
            BrowserAction::Find => WebAction::Find {
                pattern: field("pattern").unwrap_or_default(),
                url: field("url")
                    .or_else(|| last_url.clone())
                    .unwrap_or_default(),
            },
        };
    }
}

/// The result a server-run call got.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Output(String),
    Error(String),
    /// No result ever came (the item closes `incomplete`).
    Missing,
}

/// splitmix64: ids that look random and never repeat within a stream.
#[derive(Debug, Clone)]
pub(crate) struct IdGen(pub(crate) u64);

impl IdGen {
    /// `{prefix}_` and 24 hex digits.
    pub(crate) fn next(&mut self, prefix: &str) -> String {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{prefix}_{z:016x}{:08x}", (self.0 >> 32) as u32)
    }
}

/// An output item from its `output_item.added` to its `output_item.done`.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) output_index: u64,
    /// The item's text: set from the parser's message when it completes.
    pub(crate) text: String,
    /// Bytes of text already sent as deltas.
    pub(crate) emitted: usize,
    /// The logprobs of a message's text (other kinds keep none).
    pub(crate) logprobs: Vec<(u32, TokenLogprob)>,
    /// A server-run call's result.
    pub(crate) result: Option<Outcome>,
}

impl Item {
    /// A new item for a routed message: its id, then (in this order, the ids
    /// being a sequence) a function call's `call_id` or a code interpreter's
    /// made-up container id when the request names none.
    pub(crate) fn new(route: Route, output_index: u64, ids: &mut IdGen, tools: &[Tool]) -> Self {
        let id = ids.next(route.id_prefix());
        let kind = match route {
            Route::Reasoning => Kind::Reasoning,
            Route::Message { phase } => Kind::Message { phase },
            Route::Function { name } => Kind::Function {
                name,
                call_id: ids.next("call"),
            },
            Route::Mcp { server_label, name } => Kind::Mcp { server_label, name },
            Route::CodeInterpreter => Kind::CodeInterpreter {
                container_id: tools
                    .iter()
                    .find_map(|t| match t {
                        Tool::CodeInterpreter { container_id } => container_id.clone(),
                        _ => None,
                    })
                    .unwrap_or_else(|| ids.next("cntr")),
            },
            Route::WebSearch(action) => Kind::WebSearch(WebAction::new(action)),
        };
        Self {
            kind,
            id,
            output_index,
            text: String::new(),
            emitted: 0,
            logprobs: Vec::new(),
            result: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names() {
        let all = [
            Status::InProgress,
            Status::Completed,
            Status::Incomplete,
            Status::Failed,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["in_progress", "completed", "incomplete", "failed"]);
    }

    #[test]
    fn find_uses_the_last_opened_page() {
        let mut last = None;
        let mut open = Kind::WebSearch(WebAction::new(BrowserAction::Open));
        open.resolve(r#"{"id":"https://a.example"}"#, &mut last);
        assert_eq!(last.as_deref(), Some("https://a.example"));
        let mut find = Kind::WebSearch(WebAction::new(BrowserAction::Find));
        find.resolve(r#"{"pattern":"x"}"#, &mut last);
        let Kind::WebSearch(WebAction::Find { pattern, url }) = find else {
            panic!("not a find");
        };
        assert_eq!((pattern.as_str(), url.as_str()), ("x", "https://a.example"));
        // Arguments that are not JSON: an open with no url keeps the last page.
        let mut open = Kind::WebSearch(WebAction::new(BrowserAction::Open));
        open.resolve("not json", &mut last);
        assert!(matches!(
            open,
            Kind::WebSearch(WebAction::Open { url: None })
        ));
        assert_eq!(last.as_deref(), Some("https://a.example"));
    }

    #[test]
    fn ids_follow_the_kind() {
        let mut ids = IdGen(1);
        let f = Item::new(Route::Function { name: "f".into() }, 0, &mut ids, &[]);
        assert!(f.id.starts_with("fc_"));
        assert!(matches!(&f.kind, Kind::Function { call_id, .. } if call_id.starts_with("call_")));
        let ci = Item::new(
            Route::CodeInterpreter,
            1,
            &mut ids,
            &[Tool::CodeInterpreter {
                container_id: Some("cntr_given".into()),
            }],
        );
        assert!(ci.id.starts_with("ci_"));
        assert!(
            matches!(&ci.kind, Kind::CodeInterpreter { container_id } if container_id == "cntr_given")
        );
    }
}
