"""Live-session plumbing: node classes in ``nodes`` (UserTurns, SpeechMarks, ReplyMarks): the user's turns
(speech transcripts merged with typed messages) and latency marks, for the Talk page and the latency traces."""
