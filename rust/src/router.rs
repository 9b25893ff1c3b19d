//! Which Responses item a Harmony message becomes: recipient first, then channel.
//!
//! | message | item |
//! |---|---|
//! | `functions.NAME` | `function_call` |
//! | `python` | `code_interpreter_call` |
//! | `browser.search` / `.open` / `.find` | `web_search_call` |
//! | `LABEL.TOOL` where an mcp tool has `server_label` LABEL, or `mcp.TOOL` | `mcp_call` |
//! | `NAME` alone, where the request has a function tool NAME | `function_call` ([`route_with_tools`]) |
//! | any other recipient | `mcp_call` (server label = the part before the first `.`) |
//! | `analysis`, no recipient | `reasoning` |
//! | `commentary`, no recipient | `message`, phase `commentary` |
//! | `final` (or no/unknown channel), no recipient | `message`, phase `final_answer` (none for unknown) |

use crate::message::Header;

/// The tool types a request may hold, by their `type` name, and what each is.
/// The one list: the binding, the replay server and the vLLM plugin read it.
pub const TOOL_TYPES: [(&str, ToolType); 6] = [
    ("function", ToolType::Function),
    ("mcp", ToolType::Mcp),
    ("web_search", ToolType::WebSearch),
    ("web_search_preview", ToolType::WebSearch),
    ("web_search_preview_2025_03_11", ToolType::WebSearch),
    ("code_interpreter", ToolType::CodeInterpreter),
];

/// What kind of tool a request's tool is (its `type`, several names for web search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolType {
    /// A function the client runs.
    Function,
    /// A remote MCP server's tools.
    Mcp,
    /// Web search (the model's `browser.*` tool).
    WebSearch,
    /// The code interpreter (the model's `python` tool).
    CodeInterpreter,
}

impl ToolType {
    /// The tool type a request's `type` names, if the engine knows it.
    pub fn parse(name: &str) -> Option<Self> {
        TOOL_TYPES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The canonical name (one per kind).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Mcp => "mcp",
            Self::WebSearch => "web_search",
            Self::CodeInterpreter => "code_interpreter",
        }
    }
}

/// A tool the request offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `{"type": "function", "name": ...}`
    Function {
        /// Function name.
        name: String,
    },
    /// `{"type": "mcp", "server_label": ...}`
    Mcp {
        /// Server label (the recipient prefix).
        server_label: String,
    },
    /// `{"type": "web_search_preview"}` or `{"type": "web_search"}`
    WebSearch,
    /// `{"type": "code_interpreter", "container": ...}`
    CodeInterpreter {
        /// Container id (`None`: `{"type": "auto"}`, one is made up).
        container_id: Option<String>,
    },
}

/// The action of a browser call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserAction {
    /// `browser.search`
    Search,
    /// `browser.open`
    Open,
    /// `browser.find`
    Find,
}

/// The item kind a message becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `reasoning`
    Reasoning,
    /// `message`; the phase (`commentary`, `final_answer`) when the channel is known.
    Message {
        /// Phase.
        phase: Option<&'static str>,
    },
    /// `function_call`
    Function {
        /// Function name.
        name: String,
    },
    /// `mcp_call`
    Mcp {
        /// Server label.
        server_label: String,
        /// Tool name.
        name: String,
    },
    /// `code_interpreter_call`
    CodeInterpreter,
    /// `web_search_call`
    WebSearch(BrowserAction),
}

impl Route {
    /// The Responses item type (`reasoning`, `message`, `function_call`, …).
    pub fn item_type(&self) -> &'static str {
        self.names().0
    }

    /// The prefix of the ids of this route's items (`rs`, `msg`, `fc`, …).
    pub fn id_prefix(&self) -> &'static str {
        self.names().1
    }

    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Self::Reasoning => ("reasoning", "rs"),
            Self::Message { .. } => ("message", "msg"),
            Self::Function { .. } => ("function_call", "fc"),
            Self::Mcp { .. } => ("mcp_call", "mcp"),
            Self::CodeInterpreter => ("code_interpreter_call", "ci"),
            Self::WebSearch(_) => ("web_search_call", "ws"),
        }
    }

    /// The request tool that offers this call: its type and the function name or
    /// MCP server label (`None` for messages and reasoning).
    pub fn tool(&self) -> Option<(ToolType, &str)> {
        match self {
            Self::Function { name } => Some((ToolType::Function, name)),
            Self::Mcp { server_label, .. } => Some((ToolType::Mcp, server_label)),
            Self::CodeInterpreter => Some((ToolType::CodeInterpreter, "")),
            Self::WebSearch(_) => Some((ToolType::WebSearch, "")),
            Self::Reasoning | Self::Message { .. } => None,
        }
    }
}

/// Routes a message header with the request's tools: a bare recipient that
/// names one of the request's function tools (the model left out
/// `functions.`) is a call of that function; everything else as [`route`].
pub fn route_with_tools(header: &Header, tools: &[Tool]) -> Route {
    if let Some(r) = header.recipient.as_deref() {
        let declared = tools
            .iter()
            .any(|t| matches!(t, Tool::Function { name } if name == r));
        if declared && !r.starts_with("functions.") {
            return Route::Function {
                name: r.to_string(),
            };
        }
    }
    route(header)
}

/// Routes a message header.
pub fn route(header: &Header) -> Route {
    // An empty recipient (`to=` with nothing after it) is no recipient.
    if let Some(r) = header.recipient.as_deref().filter(|r| !r.is_empty()) {
        if let Some(name) = r.strip_prefix("functions.") {
            return Route::Function {
                name: name.to_string(),
            };
        }
        if r == "python" {
            return Route::CodeInterpreter;
        }
        match r {
            "browser.search" => return Route::WebSearch(BrowserAction::Search),
            "browser.open" => return Route::WebSearch(BrowserAction::Open),
            "browser.find" => return Route::WebSearch(BrowserAction::Find),
            _ => {}
        }
        // Known MCP servers, `mcp.X` and unknown recipients all become mcp_call.
        let (label, name) = r.split_once('.').unwrap_or((r, r));
        return Route::Mcp {
            server_label: label.to_string(),
            name: name.to_string(),
        };
    }
    match header.channel.as_deref() {
        Some("analysis") => Route::Reasoning,
        Some("commentary") => Route::Message {
            phase: Some("commentary"),
        },
        Some("final") => Route::Message {
            phase: Some("final_answer"),
        },
        _ => Route::Message { phase: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;

    fn h(channel: Option<&str>, recipient: Option<&str>) -> Header {
        Header {
            channel: channel.map(str::to_string),
            recipient: recipient.map(str::to_string),
            ..Header::new(Role::Assistant)
        }
    }

    #[test]
    fn bare_function_name_with_tools() {
        let tools = [Tool::Function {
            name: "get_weather".into(),
        }];
        assert_eq!(
            route_with_tools(&h(Some("commentary"), Some("get_weather")), &tools),
            Route::Function {
                name: "get_weather".into()
            }
        );
        // Not declared: an MCP call, as without tools.
        assert!(matches!(
            route_with_tools(&h(Some("commentary"), Some("get_time")), &tools),
            Route::Mcp { .. }
        ));
        assert_eq!(
            route_with_tools(
                &h(Some("commentary"), Some("functions.get_weather")),
                &tools
            ),
            route(&h(Some("commentary"), Some("functions.get_weather")))
        );
    }

    #[test]
    fn recipient_first() {
        assert_eq!(
            route(&h(Some("analysis"), Some("functions.f"))),
            Route::Function { name: "f".into() }
        );
        assert_eq!(
            route(&h(Some("analysis"), Some("python"))),
            Route::CodeInterpreter
        );
        assert_eq!(
            route(&h(Some("commentary"), Some("github.search_issues"))),
            Route::Mcp {
                server_label: "github".into(),
                name: "search_issues".into()
            }
        );
        assert_eq!(
            route(&h(Some("analysis"), Some("browser.find"))),
            Route::WebSearch(BrowserAction::Find)
        );
        assert_eq!(
            route(&h(Some("final"), None)),
            Route::Message {
                phase: Some("final_answer")
            }
        );
        assert_eq!(
            route(&h(Some("commentary"), None)),
            Route::Message {
                phase: Some("commentary")
            }
        );
        assert_eq!(route(&h(Some("analysis"), None)), Route::Reasoning);
        assert_eq!(route(&h(None, None)), Route::Message { phase: None });
        assert_eq!(
            route(&h(Some("final"), Some(""))),
            Route::Message {
                phase: Some("final_answer")
            }
        );
        assert_eq!(
            route(&h(Some("commentary"), Some("container.exec"))),
            Route::Mcp {
                server_label: "container".into(),
                name: "exec".into()
            }
        );
    }

    #[test]
    fn tool_types_and_the_tool_a_call_needs() {
        for (name, t) in TOOL_TYPES {
            assert_eq!(ToolType::parse(name), Some(t));
            assert_eq!(ToolType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ToolType::parse("file_search"), None);
        let call = |r: &str| Header {
            recipient: Some(r.into()),
            ..Header::new(crate::message::Role::Assistant)
        };
        let tools = [Tool::Function {
            name: "get_weather".into(),
        }];
        let r = route_with_tools(&call("get_weather"), &tools);
        assert_eq!(r.item_type(), "function_call");
        assert_eq!(r.tool(), Some((ToolType::Function, "get_weather")));
        let r = route(&call("github.search"));
        assert_eq!(r.tool(), Some((ToolType::Mcp, "github")));
        assert_eq!(
            route(&call("browser.open")).tool(),
            Some((ToolType::WebSearch, ""))
        );
        assert_eq!(
            route(&Header::new(crate::message::Role::Assistant)).tool(),
            None
        );
    }
}
