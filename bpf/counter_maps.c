/* counter_maps.c: the one definition of the traffic counter's maps (first object in the link). */
#define SKIFF_COUNTER_DEFINE_MAPS
#include "counter_maps.h"
