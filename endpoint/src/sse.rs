//! Classifies the JSON payload of one SSE `data:` event of an OpenAI-compatible stream.
//!
//! The transport side (splitting the byte stream into events) is `eventsource-stream`; this
//! module only decides what one event means for the measurement: a token chunk (non-empty
//! text), an empty content chunk, a bookkeeping chunk (chat role announcement, finish reason,
//! usage), an in-stream server error, or a malformed payload.

use serde::Deserialize;

/// The `data:` payload that ends an OpenAI-compatible stream.
pub(crate) const DONE: &str = "[DONE]";

/// What one `data:` event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// What the first choice carried.
    pub kind: ChunkKind,
    /// `usage` when the chunk has one (the final chunk with `include_usage`, or every chunk
    /// with vLLM's `continuous_usage_stats`): `(prompt_tokens, completion_tokens)`.
    pub usage: Option<(u32, u32)>,
    /// Whether the first choice carries a `finish_reason`.
    pub finished: bool,
}

/// The content of a chunk's first choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkKind {
    /// Non-empty generated text (completions `text`, chat `delta.content` or a reasoning
    /// model's `delta.reasoning_content` / `delta.reasoning`).
    Token,
    /// A choice with empty text that neither announces the chat role nor carries a
    /// `finish_reason`: a content chunk that should have held a token.
    Empty,
    /// No choice, or a choice that only announces the role or the finish reason.
    Other,
    /// `{"error": ...}` sent inside the stream (vLLM does this when generation fails).
    ServerError(String),
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Vec<RawChoice>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    delta: Option<RawDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

/// Parses one `data:` payload (not `[DONE]`). `Err` means the payload is not a JSON object of
/// the expected shape.
pub(crate) fn parse_chunk(data: &str) -> Result<Chunk, serde_json::Error> {
    let raw: RawChunk = serde_json::from_str(data)?;
    if let Some(err) = raw.error {
        let message = err
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| err.to_string(), str::to_owned);
        return Ok(Chunk {
            kind: ChunkKind::ServerError(message),
            usage: None,
            finished: false,
        });
    }
    let usage = raw.usage.map(|u| (u.prompt_tokens, u.completion_tokens));
    let kind = match raw.choices.first() {
        None => ChunkKind::Other,
        Some(choice) => {
            let delta = choice.delta.as_ref();
            let texts = [
                choice.text.as_deref(),
                delta.and_then(|d| d.content.as_deref()),
                delta.and_then(|d| d.reasoning_content.as_deref()),
                delta.and_then(|d| d.reasoning.as_deref()),
            ];
            if texts.iter().flatten().any(|t| !t.is_empty()) {
                ChunkKind::Token
            } else if choice.finish_reason.is_some() || delta.is_some_and(|d| d.role.is_some()) {
                ChunkKind::Other
            } else {
                ChunkKind::Empty
            }
        }
    };
    let finished = raw
        .choices
        .first()
        .is_some_and(|c| c.finish_reason.is_some());
    Ok(Chunk {
        kind,
        usage,
        finished,
    })
}

/// At most `max_chars` characters of `s`, with `…` appended when cut, newlines escaped so the
/// excerpt stays on one line.
pub(crate) fn excerpt(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max_chars)
        .flat_map(|c| match c {
            '\n' => vec!['\\', 'n'],
            '\r' => vec!['\\', 'r'],
            c => vec![c],
        })
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_token_and_usage() {
        let c =
            parse_chunk(r#"{"choices":[{"index":0,"text":" hi","finish_reason":null}]}"#).unwrap();
        assert_eq!(c.kind, ChunkKind::Token);
        assert_eq!(c.usage, None);
        let u = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        )
        .unwrap();
        assert_eq!(u.kind, ChunkKind::Other);
        assert_eq!(u.usage, Some((7, 3)));
    }

    #[test]
    fn chat_role_chunk_is_not_empty_but_blank_content_is() {
        let role =
            parse_chunk(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert_eq!(role.kind, ChunkKind::Other);
        let tok = parse_chunk(r#"{"choices":[{"delta":{"content":"x"}}]}"#).unwrap();
        assert_eq!(tok.kind, ChunkKind::Token);
        let reasoning =
            parse_chunk(r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#).unwrap();
        assert_eq!(reasoning.kind, ChunkKind::Token);
        let empty = parse_chunk(r#"{"choices":[{"delta":{"content":""}}]}"#).unwrap();
        assert_eq!(empty.kind, ChunkKind::Empty);
        let finish = parse_chunk(r#"{"choices":[{"text":"","finish_reason":"length"}]}"#).unwrap();
        assert_eq!(finish.kind, ChunkKind::Other);
    }

    #[test]
    fn in_stream_error_and_malformed() {
        let e = parse_chunk(r#"{"error":{"message":"boom","code":500}}"#).unwrap();
        assert_eq!(e.kind, ChunkKind::ServerError("boom".into()));
        assert!(parse_chunk("{\"choices\": [oops").is_err());
        assert!(parse_chunk("[1,2]").is_err());
    }

    #[test]
    fn excerpt_is_one_line_and_bounded() {
        assert_eq!(excerpt("a\nb", 10), "a\\nb");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }
}
