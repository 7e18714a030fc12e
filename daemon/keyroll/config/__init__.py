"""Configuration: the schema (one declaration), the policy it yields, and the defaults."""
