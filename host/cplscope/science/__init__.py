"""The physics of a point, from frames to result: the frames themselves, the point pipeline
(context → estimate → result and flags), accumulations and the blank, and each mode's physics
(CPL emission, analog sampling, CD transmission). Pure functions of data: nothing here talks
to a board or writes a file."""
