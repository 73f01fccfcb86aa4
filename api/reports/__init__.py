"""The weekly cost-waste email: gathered (`data`), built by a pure function (`weekly`),
then sent (`smtp`)."""
