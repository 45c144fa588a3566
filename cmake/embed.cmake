# Writes file IN as a C array: const unsigned char fg_descriptor_set[]; and
# its size (cmake -DIN=... -DOUT=... -P embed.cmake).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from the descriptor set of the served protos. */\n#include <stddef.h>\nconst unsigned char fg_descriptor_set[] = {\n${body}\n};\nconst size_t fg_descriptor_set_size = ${size};\n")
