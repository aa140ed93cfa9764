"""Measurements as plans on a :class:`~cplscope.board.controller.Controller`: a dark, one point
(fixed or adaptive dwell), the scan engine with its survey and time planning, resume and
reprocess, and the calibration runs. Plans emit documents (:mod:`cplscope.data.documents`)."""
