"""The board and its link: the USB transport, the board's commands and acquisitions
(:class:`~cplscope.board.controller.Controller`), finding and opening a board, udev rules and
compiling the firmware for it."""
