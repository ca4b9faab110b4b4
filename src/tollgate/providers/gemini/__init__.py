"""Google Gemini (Generative Language API: generateContent, streamGenerateContent, batchEmbedContents)."""
