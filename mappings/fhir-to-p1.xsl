<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical FHIR R4 (as accepted by cergw) to what P1 / CeR receives: the same
  resources, each declaring the CeR profile it claims (meta.profile, our own
  naming after the draft PLScheduling profiles; P1's official profile names are
  not public) and the gateway message it came from (meta.source). A
  cancellation made less than 48 h before the visit is tagged so that the
  Poczekalnia does not offer the slot again. The engine renders the result as
  FHIR JSON.
  Parameters: $message_key (the delivery's idempotency key), $late_cancel
  ('1' when the rule of 48 h applies).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:f="http://hl7.org/fhir"
                exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="message_key" select="''"/>
  <xsl:param name="late_cancel" select="''"/>
  <xsl:variable name="PROFILE_BASE" select="'https://ezdrowie.gov.pl/fhir/StructureDefinition/PLCeR'"/>

  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy>
  </xsl:template>

  <!-- the resources CeR keeps get a profile and a source; the Patient rides along unchanged -->
  <xsl:template match="f:Schedule|f:Slot|f:Appointment">
    <xsl:copy>
      <xsl:apply-templates select="@*|f:id"/>
      <meta xmlns="http://hl7.org/fhir">
        <xsl:if test="$message_key != ''"><source value="urn:cergw:{$message_key}"/></xsl:if>
        <profile value="{$PROFILE_BASE}{local-name()}"/>
        <xsl:apply-templates select="f:meta/f:profile[not(starts-with(@value, $PROFILE_BASE))]|f:meta/f:security"/>
        <xsl:apply-templates select="f:meta/f:tag"/>
        <xsl:if test="$late_cancel = '1' and self::f:Appointment and f:status/@value = 'cancelled'">
          <tag>
            <system value="http://cergw.pl/fhir/CodeSystem/poczekalnia"/>
            <code value="not-reassignable"/>
            <display value="odwołanie mniej niż 48 h przed wizytą: termin nie trafia do Poczekalni"/>
          </tag>
        </xsl:if>
      </meta>
      <xsl:apply-templates select="node()[not(self::f:id or self::f:meta)]"/>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
