#include <tensortape/tensortape.hpp>

int main() { return 0; }
