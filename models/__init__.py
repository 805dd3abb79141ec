"""The lowest floor: settings, the database and its queries, Redis names; shared by web and actors."""
