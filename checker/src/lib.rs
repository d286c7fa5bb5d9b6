//! The model checker and history checkers (to come).
