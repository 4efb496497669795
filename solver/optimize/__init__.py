"""The optimiser: integer encoding of candidate tables (:mod:`.encode`), the CP-SAT model and its
solve (:mod:`.cpsat`, the only module that imports OR-Tools), and a brute-force reference solver
for tests (:mod:`.brute`)."""
