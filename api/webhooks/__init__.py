"""Webhook ingestion, the pure part: signature and token checks on the raw body (`signatures`), and
parsing of GitHub, GitLab and Bitbucket Cloud deliveries into normalized events (`parsing`,
`events`). No HTTP framework and no database here: the API routes call these."""
