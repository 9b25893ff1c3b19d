//! What the parser produces: roles, headers, messages and recovery records.

/// Author role of a Harmony message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `user`
    User,
    /// `assistant`
    Assistant,
    /// `system`
    System,
    /// `developer`
    Developer,
    /// `tool`
    Tool,
}

impl Role {
    /// The role's name as written in a header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Developer => "developer",
            Self::Tool => "tool",
        }
    }

    /// Parses a role name (exact, lower case, as openai-harmony does).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "system" => Self::System,
            "developer" => Self::Developer,
            "tool" => Self::Tool,
            _ => return None,
        })
    }
}

/// The parsed header of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Author role.
    pub role: Role,
    /// Author name (tools: e.g. `functions.get_weather`).
    pub name: Option<String>,
    /// `analysis`, `commentary`, `final`, ...
    pub channel: Option<String>,
    /// `functions.x`, `python`, `browser.search`, ...
    pub recipient: Option<String>,
    /// e.g. `<|constrain|>json`.
    pub content_type: Option<String>,
}

impl Header {
    /// A header with only a role.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            name: None,
            channel: None,
            recipient: None,
            content_type: None,
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndToken {
    /// `<|end|>`
    End,
    /// `<|call|>`
    Call,
    /// `<|return|>`
    Return,
    /// End of stream (`process_eos`) before any stop token.
    Eos,
}

impl EndToken {
    /// `"end"`, `"call"`, `"return"` or `"eos"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::End => "end",
            Self::Call => "call",
            Self::Return => "return",
            Self::Eos => "eos",
        }
    }
}

/// A completed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Role, name, channel, recipient and content type.
    pub header: Header,
    /// The whole text content.
    pub content: String,
    /// The token that closed the message.
    pub end: EndToken,
}

/// A quirk the lenient parser recovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryKind {
    /// A stop token (`<|end|>`, `<|call|>`, `<|return|>`) where a message start was
    /// expected, e.g. `<|end|><|return|>`: ignored. A `<|call|>`/`<|return|>` right
    /// after `<|end|>` becomes the previous message's end token.
    StrayStopToken,
    /// Something other than `<|start|>` where a message start was expected: an
    /// implicit `<|start|>` with the parser's role is assumed.
    MissingStart,
    /// `<|start|>` inside a header (`<|start|><|start|>assistant`): the header restarts.
    RepeatedStart,
    /// A header closed by a stop token, `<|start|>` or end of stream before
    /// `<|message|>`. Its text became a message or was dropped, as `detail` says.
    HeaderWithoutMessage,
    /// A header that strict parsing rejects; parsed leniently, leftovers in `detail`.
    MalformedHeader,
    /// `<|channel|>final <|constrain|>json` read as recipient `<|constrain|>json`
    /// by openai-harmony 0.0.8; taken as the content type instead.
    ConstrainAsRecipient,
    /// A channel name with trailing junk (`commentary?`) normalized to a known channel.
    ChannelNormalized,
    /// A header closed before `<|message|>` (by a stop token, `<|start|>` or the end
    /// of the stream) whose text goes on after a known channel or a recipient
    /// (`<|channel|>final {"answer": "hi"}<|return|>`), or a completion's first
    /// header that is plain text with no header parts: that text became the
    /// message's content (openai-harmony drops it or raises).
    TextInHeader,
}

impl RecoveryKind {
    /// How many kinds there are.
    pub const COUNT: usize = 8;

    /// Every kind, in declaration order (`ALL[k.index()] == k`).
    pub const ALL: [Self; Self::COUNT] = [
        Self::StrayStopToken,
        Self::MissingStart,
        Self::RepeatedStart,
        Self::HeaderWithoutMessage,
        Self::MalformedHeader,
        Self::ConstrainAsRecipient,
        Self::ChannelNormalized,
        Self::TextInHeader,
    ];

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StrayStopToken => "stray_stop_token",
            Self::MissingStart => "missing_start",
            Self::RepeatedStart => "repeated_start",
            Self::HeaderWithoutMessage => "header_without_message",
            Self::MalformedHeader => "malformed_header",
            Self::ConstrainAsRecipient => "constrain_as_recipient",
            Self::ChannelNormalized => "channel_normalized",
            Self::TextInHeader => "text_in_header",
        }
    }
}

/// One recovery, at the token that triggered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Index of the token (or the token count, for end of stream).
    pub token_index: usize,
    /// What was recovered from.
    pub kind: RecoveryKind,
    /// What was done, with the text involved.
    pub detail: String,
}
