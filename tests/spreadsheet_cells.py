"""Cells to test both CSV writers against (the batch job's and the web page's):
text a spreadsheet would run, and text it reads as a number or as plain text."""

# OWASP's CSV injection guidance: a spreadsheet runs a cell that starts with
# one of = + - @ tab CR (ASVS 1.2.10 adds NUL).
FORMULAS = [
    "=cmd|' /C calc'!A0",
    "@SUM(1)",
    '+HYPERLINK("http://evil.example","x")',
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "\x00=1",
    "=",
    "-",
    "+ 3",
    "-1.5 ",
    "-inf",
    "-Infinity",
    "-0x1f",
]
# Text that spells a number: a spreadsheet reads the number, which runs nothing.
NUMBER_TEXT = ["-1.5", "+3", "1e-3", "-.5", "+2.", "-1E+10", "7", "007", "-0"]
# Text that starts with none of those characters.
PLAIN_TEXT = ["plain", " =1", " =1+1", "a=b", "'=1", ""]
