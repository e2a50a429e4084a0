//! A loopback mock model server speaking the OpenAI Responses, Chat Completions and Gemini wire formats.
